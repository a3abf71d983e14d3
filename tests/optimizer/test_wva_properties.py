"""Safety properties of the wva policy over generated states (seeded)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.cli import decide
from optimizer.policy_wva import WvaResult, decide_wva
from optimizer.saturation import SaturationConfig
from optimizer.state import ClusterState, parse_state
from optimizer.wva_signals import model_spares, variant_signals

PROFILE = settings(derandomize=True, max_examples=200, deadline=None, database=None)
ACCELERATORS = [("L40S", 1.86), ("A100-80GB", 5.12), ("H100-80GB", 12.29)]

kv_values = st.one_of(
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.none(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.2, 1.3]),
)
queue_values = st.one_of(
    st.floats(0.0, 12.0),
    st.floats(0.0, 12.0),
    st.none(),
    st.sampled_from([math.nan, math.inf, -1.0]),
)


@st.composite
def replica(draw: st.DrawFn, name: str) -> dict[str, Any]:
    row: dict[str, Any] = {
        "pod": name,
        "kv_cache_usage": draw(kv_values),
        "num_requests_waiting": draw(queue_values),
        "num_requests_running": draw(st.none() | st.floats(0.0, 120.0)),
        "phase": draw(st.sampled_from(["Running"] * 6 + ["Pending", "Terminating"])),
    }
    if draw(st.booleans()):
        row["age_s"] = draw(st.sampled_from([5.0, 30.0, 90.0]))
    return row


@st.composite
def variant(draw: st.DrawFn, model: str, index: int) -> dict[str, Any]:
    low = draw(st.integers(0, 2))
    high = draw(st.integers(max(1, low), 10))
    count = draw(st.integers(0, 6))
    replicas = [draw(replica(f"{model}-v{index}-r{i}")) for i in range(count)]
    live = sum(1 for r in replicas if r["phase"] != "Terminating")
    row: dict[str, Any] = {
        "name": f"{model}-v{index}",
        "model": model,
        "accelerator": draw(st.sampled_from([a for a, _ in ACCELERATORS])),
        "service_class": "interactive",
        "min_replicas": low,
        "max_replicas": high,
        "current_replicas": live,
        "replicas": replicas,
    }
    if draw(st.booleans()):
        row["profile"] = {
            "alpha": 7.0,
            "beta": 0.027,
            "gamma": 20.0,
            "delta": 0.03,
            "max_num_seqs": draw(st.sampled_from([16, 64, 128])),
        }
    return row


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    models = [f"m{i}" for i in range(draw(st.integers(1, 2)))]
    variants = [
        draw(variant(model, i))
        for model in models
        for i in range(draw(st.integers(1, 3)))
    ]
    demand: dict[str, Any] = {}
    for model in models:
        if draw(st.booleans()):
            demand[model] = {
                "arrival_rate": draw(st.floats(0.0, 60.0)),
                "avg_input_tokens": 1000,
                "avg_output_tokens": 200,
            }
    return {
        "policy": "wva",
        "accelerators": [
            {
                "name": name,
                "usd_per_gpu_hour": price,
                "gpus_available": draw(st.none() | st.integers(0, 8)),
            }
            for name, price in ACCELERATORS
        ],
        "service_classes": [
            {"name": "interactive", "priority": 1, "ttft_ms": 800, "itl_ms": 9.0}
        ],
        "variants": variants,
        "demand": demand,
    }


def solve(document: dict[str, Any]) -> tuple[ClusterState, WvaResult]:
    state = parse_state(document)
    return state, decide_wva(state)


@PROFILE
@given(documents())
def test_degraded_variant_never_reduced(document: dict[str, Any]) -> None:
    _, result = solve(document)
    for decision in result.decisions:
        if decision.degraded:
            assert decision.target_replicas >= decision.current_replicas


@PROFILE
@given(documents())
def test_scale_up_trigger_blocks_reduction(document: dict[str, Any]) -> None:
    state, result = solve(document)
    config = SaturationConfig()
    by_variant = {v.name: v for v in state.variants}
    for decision in result.decisions:
        model_variants = [v for v in state.variants if v.model == decision.model]
        signals = [variant_signals(v, config, 240.0) for v in model_variants]
        if model_spares(signals, config).up_reasons:
            variant = by_variant[decision.variant]
            stuck = len(variant_signals(variant, config, 240.0).stuck)
            assert decision.target_replicas >= decision.current_replicas - stuck


@PROFILE
@given(documents())
def test_reduction_is_one_step(document: dict[str, Any]) -> None:
    _, result = solve(document)
    for decision in result.decisions:
        assert decision.target_replicas >= decision.current_replicas - 1
        removed = max(0, decision.current_replicas - decision.target_replicas)
        assert len(decision.victim_pods) == removed


@PROFILE
@given(documents())
def test_targets_within_bounds(document: dict[str, Any]) -> None:
    state, result = solve(document)
    by_variant = {v.name: v for v in state.variants}
    for decision in result.decisions:
        variant = by_variant[decision.variant]
        # Above max only when already above it: the count then never grows.
        assert decision.target_replicas <= max(
            variant.max_replicas, variant.current_replicas
        )
        if decision.target_replicas > variant.max_replicas:
            assert decision.target_replicas <= decision.current_replicas
        assert decision.target_replicas >= min(
            variant.min_replicas, variant.current_replicas
        )


@PROFILE
@given(documents())
def test_gpu_budget_never_exceeded(document: dict[str, Any]) -> None:
    state, result = solve(document)
    by_variant = {v.name: v for v in state.variants}
    for name, accelerator in state.accelerators.items():
        if accelerator.gpus_available is None:
            continue
        # Raising a variant to its min is exempt: min is a hard bound.
        added = sum(
            by_variant[d.variant].gpus_per_replica
            * max(
                0,
                d.target_replicas
                - max(d.current_replicas, by_variant[d.variant].min_replicas),
            )
            for d in result.decisions
            if by_variant[d.variant].accelerator.name == name
        )
        assert added <= accelerator.gpus_available


@PROFILE
@given(documents())
def test_output_is_strict_json(document: dict[str, Any]) -> None:
    output = decide(parse_state(document))
    text = json.dumps(output, allow_nan=False)
    assert json.loads(text)["policy"] == "wva"
