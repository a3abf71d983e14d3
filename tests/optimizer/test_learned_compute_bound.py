"""Learned compute bound k2 in the `wva` state and the token sizing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from optimizer.policy_wva import decide_wva
from optimizer.state import InputError, parse_state

STATE: dict[str, Any] = {
    "policy": "wva",
    "accelerators": [{"name": "L40S", "usd_per_gpu_hour": 1.86}],
    # Token lengths known, arrival rate not: the saturation fallback sizes.
    "demand": {"M": {"avg_input_tokens": 500, "avg_output_tokens": 100}},
    "variants": [
        {
            "name": "v",
            "model": "M",
            "accelerator": "L40S",
            "min_replicas": 1,
            "max_replicas": 10,
            "current_replicas": 2,
            "profile": {"kv_tokens": 100000},
            "replicas": [
                {"pod": "v1", "kv_cache_usage": 0.79, "num_requests_waiting": 4},
                {"pod": "v2", "kv_cache_usage": 0.79, "num_requests_waiting": 4},
            ],
        }
    ],
}


def state_with(learned: Any) -> dict[str, Any]:
    document = copy.deepcopy(STATE)
    document["variants"][0]["profile"]["learned_compute_tokens"] = learned
    return document


def test_profile_reads_learned_bound() -> None:
    state = parse_state(state_with(20000))
    assert state.variants[0].profile.learned_compute_tokens == 20000.0


def test_null_learned_bound_is_unknown() -> None:
    state = parse_state(state_with(None))
    assert state.variants[0].profile.learned_compute_tokens is None


def test_negative_learned_bound_rejected() -> None:
    with pytest.raises(InputError, match=r"learned_compute_tokens: must be >= 0"):
        parse_state(state_with(-1))


def test_memory_bound_alone_adds_one() -> None:
    # Given KV usage of 0.79 on two replicas and only the memory bound.
    result = decide_wva(parse_state(copy.deepcopy(STATE)))
    # Then the token shortfall needs one more replica.
    assert result.decisions[0].target_replicas == 3


def test_learned_bound_sizes_larger_step() -> None:
    # Given the same load and a learned bound of 20,000 tokens per replica.
    result = decide_wva(parse_state(state_with(20000)))
    decision = result.decisions[0]
    # Then the capacity per replica is the learned bound and the step is larger:
    # demand 2 * (79,000 + 4 * 600) / 0.85 - 2 * 20,000 needs 8 more.
    assert decision.target_replicas == 10
    assert "sized_by_kv_tokens" in decision.reasons
