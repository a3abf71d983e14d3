"""`wva` around GPU placement: starting replicas leave first, shortages are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optimizer.policy_wva import decide_wva
from optimizer.state import parse_state


def ready(pod: str, kv: float, waiting: float) -> dict[str, Any]:
    return {
        "pod": pod,
        "kv_cache_usage": kv,
        "num_requests_waiting": waiting,
        "num_requests_running": 1,
    }


def state(kv: float, waiting: float) -> dict[str, Any]:
    """L40S variant A 3 -> 4 with a4 Pending (no free L40S), H100 variant B at 2."""
    pending = {
        "pod": "a4",
        "phase": "Pending",
        "ready": False,
        "kv_cache_usage": None,
        "num_requests_waiting": None,
        "num_requests_running": None,
    }
    return {
        "policy": "wva",
        "now_s": 1000.0,
        "accelerators": [
            {"name": "L40S", "usd_per_gpu_hour": 1.86, "gpus_available": 0},
            {"name": "H100-80GB", "usd_per_gpu_hour": 12.29, "gpus_available": 4},
        ],
        "variants": [
            {
                "name": "A",
                "model": "M",
                "accelerator": "L40S",
                "min_replicas": 1,
                "max_replicas": 8,
                "current_replicas": 4,
                "ready_replicas": 3,
                "replicas": [
                    *(ready(f"a{i}", kv, waiting) for i in (1, 2, 3)),
                    pending,
                ],
            },
            {
                "name": "B",
                "model": "M",
                "accelerator": "H100-80GB",
                "min_replicas": 1,
                "max_replicas": 8,
                "current_replicas": 2,
                "ready_replicas": 2,
                "replicas": [ready("b1", kv, waiting), ready("b2", kv, waiting)],
            },
        ],
    }


def decisions(document: dict[str, Any]) -> dict[str, Any]:
    result = decide_wva(parse_state(document))
    return {decision.variant: decision for decision in result.decisions}


def test_load_drop_removes_pending_replica_first() -> None:
    by_variant = decisions(state(kv=0.05, waiting=0))
    a = by_variant["A"]
    assert a.target_replicas == 3
    assert a.victim_pods == ("a4",)
    assert "scale_down:pending_first" in a.reasons
    assert by_variant["B"].target_replicas == 2


def test_pending_replica_kept_while_load_needs_it() -> None:
    by_variant = decisions(state(kv=0.85, waiting=6))
    assert by_variant["A"].target_replicas == 4
    assert by_variant["A"].victim_pods == ()
    # No free L40S GPU: the next-cheapest variant with free GPUs grows.
    assert by_variant["B"].target_replicas == 3


def test_ready_replicas_kept_while_one_starts() -> None:
    # Only the starting replica may go; ready ones wait until it landed.
    by_variant = decisions(state(kv=0.05, waiting=0))
    assert by_variant["A"].target_replicas >= 3
    assert all(pod == "a4" for pod in by_variant["A"].victim_pods)


def test_no_free_gpu_only_when_gpus_short() -> None:
    # Given the two-model example with 4 free GPUs of every type and a
    # cheaper A100, for which the allocation grows A100 and leaves H100 as
    # it is although H100 has free GPUs.
    path = Path(__file__).resolve().parents[2] / "optimizer/examples"
    document = json.loads((path / "wva-slo-two-models.json").read_text())
    for accelerator in document["accelerators"]:
        accelerator["gpus_available"] = 4
        if accelerator["name"] == "A100-80GB":
            accelerator["usd_per_gpu_hour"] = 3.0
    document["demand"]["meta-llama/Llama-3.1-8B-Instruct"]["arrival_rate"] = 20
    by_variant = decisions(document)
    assert by_variant["llama-8b-a100"].target_replicas > 2
    h100 = by_variant["llama-8b-h100"]
    # Then no decision blames a GPU shortage that does not exist.
    assert "no_free_gpu:H100-80GB" not in h100.reasons
    assert h100.bound_by != "gpu_budget"
    assert "no_free_gpu:H100-80GB" not in by_variant["llama-8b-a100"].reasons


def test_scheduled_starting_replica_stays() -> None:
    # Given the same load drop, but a4 has a node and pulls its image: it is
    # the new half of a move that the other replicas only bridge.
    document = state(kv=0.05, waiting=0)
    document["variants"][0]["replicas"][3]["scheduled"] = True

    a = decisions(document)["A"]

    assert "scale_down:pending_first" not in a.reasons
    assert "a4" not in a.victim_pods


def test_unscheduled_replica_still_leaves_first() -> None:
    document = state(kv=0.05, waiting=0)
    document["variants"][0]["replicas"][3]["scheduled"] = False

    a = decisions(document)["A"]

    assert a.victim_pods == ("a4",)
    assert "scale_down:pending_first" in a.reasons
