"""The product policy wva on fixed states."""

from __future__ import annotations

import math
from typing import Any

import pytest

from optimizer.policy_wva import WvaDecision, WvaResult, decide_wva
from optimizer.queueing import LatencyProfile, replica_capacity_rps
from optimizer.state import parse_state

PRICES = {"H100-80GB": 12.29, "H200": 10.60, "A100-80GB": 5.12, "L40S": 1.86}
H100_PROFILE = {"alpha": 7.0, "beta": 0.027, "gamma": 20.0, "delta": 0.03}
INTERACTIVE = {"name": "interactive", "priority": 1, "ttft_ms": 500, "itl_ms": 8.0}


def pod(
    name: str, kv: float | None, waiting: float | None, **extra: Any
) -> dict[str, Any]:
    return {"pod": name, "kv_cache_usage": kv, "num_requests_waiting": waiting, **extra}


def variant(
    name: str,
    accelerator: str,
    replicas: list[dict[str, Any]],
    current: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "model": "m",
        "accelerator": accelerator,
        "min_replicas": 1,
        "max_replicas": 8,
        "current_replicas": len(replicas) if current is None else current,
        "replicas": replicas,
    }
    row.update(fields)
    return row


def state(*variants: dict[str, Any], **root: Any) -> dict[str, Any]:
    free = root.pop("free", {})
    return {
        "policy": "wva",
        "accelerators": [
            {"name": name, "usd_per_gpu_hour": price, "gpus_available": free.get(name)}
            for name, price in PRICES.items()
        ],
        "variants": list(variants),
        **root,
    }


def run(document: dict[str, Any]) -> WvaResult:
    return decide_wva(parse_state(document))


def rows(document: dict[str, Any]) -> dict[str, WvaDecision]:
    return {d.variant: d for d in run(document).decisions}


# Missing, stale and invalid data


def test_missing_kv_holds_when_queue_points_down() -> None:
    replicas = [pod(f"a{i}", None, 1) for i in range(6)]
    decision = rows(state(variant("A", "H100-80GB", replicas, max_replicas=12)))["A"]
    assert decision.target_replicas == 6
    assert decision.degraded
    assert "missing_signal:kv_cache_usage" in decision.reasons
    assert decision.bound_by == "missing_data"


def test_missing_kv_allows_scale_up_on_queue() -> None:
    replicas = [pod(f"a{i}", None, 5) for i in range(6)]
    decision = rows(state(variant("A", "H100-80GB", replicas, max_replicas=12)))["A"]
    assert decision.target_replicas >= 7
    assert decision.degraded
    assert "missing_signal:kv_cache_usage" in decision.reasons


def test_missing_sample_is_not_idle() -> None:
    replicas = [pod("r1", 0.30, 1), pod("r2", 0.35, 1), pod("r3", None, None)]
    decision = rows(state(variant("A", "H100-80GB", replicas)))["A"]
    assert decision.target_replicas == 3
    assert decision.degraded
    assert "missing_metrics:r3" in decision.reasons
    assert decision.victim_pods == ()


def test_missing_sample_with_pending_grows_other_variant() -> None:
    a = variant(
        "A",
        "H100-80GB",
        [
            pod("r1", 0.95, 12),
            pod("r2", None, None),
            pod("r3", None, None, phase="Pending"),
        ],
    )
    b = variant("B", "H200", [pod("b1", 0.85, 6)], gpus_per_replica=2)
    result = rows(state(a, b))
    assert result["A"].target_replicas == 3
    assert result["B"].target_replicas == 2
    assert "saturated:r1,b1" in result["A"].reasons
    assert "missing_metrics:r2" in result["A"].reasons
    assert "pending:r3" in result["A"].reasons
    assert "saturated:r1,b1" in result["B"].reasons


@pytest.mark.parametrize("bad_kv", [math.nan, -math.inf, 1.3])
def test_invalid_kv_holds_variant(bad_kv: float) -> None:
    replicas = [pod("a1", math.nan, 2), pod("a2", 0.50, 2), pod("a3", bad_kv, 2)]
    decision = rows(state(variant("A", "H100-80GB", replicas)))["A"]
    assert decision.target_replicas == 3
    assert decision.degraded
    assert "missing_metrics:a1,a3" in decision.reasons


def test_nan_on_one_replica_holds_variant() -> None:
    replicas = [pod("a1", math.nan, 2), pod("a2", 0.50, 2), pod("a3", 0.60, 2)]
    decision = rows(state(variant("A", "H100-80GB", replicas)))["A"]
    assert decision.target_replicas == 3
    assert "non_finite:kv_cache_usage" in decision.reasons


def test_stale_sample_blocks_reduction() -> None:
    replicas = [pod("a1", 0.1, 0), pod("a2", 0.1, 0), pod("a3", 0.1, 0, age_s=90)]
    decision = rows(state(variant("A", "H100-80GB", replicas)))["A"]
    assert decision.target_replicas == 3
    assert "stale_metrics:a3" in decision.reasons


def test_unlisted_ready_replica_blocks_reduction() -> None:
    replicas = [pod("a1", 0.1, 0), pod("a2", 0.1, 0)]
    decision = rows(state(variant("A", "H100-80GB", replicas, current=3)))["A"]
    assert decision.target_replicas == 3
    assert "missing_samples:A=1" in decision.reasons


def test_healthy_idle_variant_loses_one() -> None:
    replicas = [
        pod("a1", 0.20, 1),
        pod("a2", 0.30, 1, num_requests_running=4),
        pod("a3", 0.25, 1),
    ]
    decision = rows(state(variant("A", "H100-80GB", replicas)))["A"]
    assert decision.target_replicas == 2
    assert decision.victim_pods == ("a1",)
    assert "scale_down:safe" in decision.reasons


# Replica phases


def test_terminating_replicas_are_not_capacity() -> None:
    replicas = [
        pod("a1", 0.95, 20),
        *(pod(f"a{i}", 0.30, 0, terminating=True) for i in (2, 3, 4)),
    ]
    decision = rows(state(variant("A", "L40S", replicas, current=1)))["A"]
    assert decision.target_replicas == 2


def test_terminating_phase_is_not_capacity() -> None:
    replicas = [pod("a1", 0.95, 20), pod("a2", 0.30, 0, phase="Terminating")]
    decision = rows(state(variant("A", "L40S", replicas, current=1)))["A"]
    assert decision.target_replicas == 2


def test_pending_replica_holds_single_variant() -> None:
    replicas = [
        pod("a1", 0.92, 9),
        pod("a2", 0.90, 7),
        pod("a3", None, None, phase="Pending"),
    ]
    decision = rows(state(variant("A", "H100-80GB", replicas)))["A"]
    assert decision.target_replicas == 3
    assert decision.bound_by == "transition"
    assert "pending:a3" in decision.reasons


def test_unrealised_increase_counts_as_pending() -> None:
    replicas = [pod("a1", 0.92, 9), pod("a2", 0.90, 7)]
    decision = rows(state(variant("A", "H100-80GB", replicas, desired_replicas=3)))["A"]
    assert decision.target_replicas == 2
    assert "pending:A=1" in decision.reasons


def test_stuck_pending_replica_is_removed() -> None:
    replicas = [
        pod("a1", 0.5, 2),
        pod("a4", None, None, phase="Pending", pending_s=270),
    ]
    decision = rows(state(variant("A", "L40S", replicas)))["A"]
    assert decision.target_replicas == 1
    assert decision.victim_pods == ("a4",)
    assert "unschedulable:a4" in decision.reasons


# Busy fleets and caps


def busy_fleet() -> dict[str, Any]:
    replicas = [
        pod(
            f"a{i}",
            0.50,
            3 if i < 26 else 4,
            num_requests_running=103 if i < 6 else 102,
        )
        for i in range(29)
    ]
    return state(
        variant(
            "A",
            "H100-80GB",
            replicas,
            max_replicas=40,
            profile={"max_num_seqs": 100},
            hpa={
                "metrics": [
                    {
                        "type": "pods",
                        "metric": "num_requests_running",
                        "target_average_value": 100,
                    }
                ]
            },
        )
    )


def test_busy_fleet_sized_by_batch_slots() -> None:
    # (2964 + 90) in flight over 100 slots at 0.85 headroom: 36 replicas
    decision = rows(busy_fleet())["A"]
    assert decision.target_replicas == 36
    assert "sized_by_batch_slots" in decision.reasons


def test_busy_fleet_hpa_counterfactual_stays() -> None:
    decision = rows(busy_fleet())["A"]
    assert decision.hpa is not None
    assert decision.hpa.desired_replicas == 29


def test_capped_at_max_explains() -> None:
    replicas = [pod(f"a{i}", 0.9, 6) for i in range(4)]
    decision = rows(state(variant("A", "H100-80GB", replicas, max_replicas=4)))["A"]
    assert decision.target_replicas == 4
    assert "capped_by_max" in decision.reasons
    assert decision.bound_by == "max_replicas"
    assert decision.message == "wants 5, capped at 4 (max)"


def test_hpa_counterfactual_rate_limited_then_max() -> None:
    metric = {
        "type": "external",
        "name": "queue",
        "value": 8 * 10 * 50,
        "target_average_value": 10,
    }
    replicas = [pod(f"a{i}", 0.5, 1) for i in range(50)]
    first = variant(
        "A", "H100-80GB", replicas, max_replicas=200, hpa={"metrics": [metric]}
    )
    first_hpa = rows(state(first))["A"].hpa
    assert first_hpa is not None
    assert first_hpa.desired_replicas == 100
    metric["value"] = 8 * 10 * 100
    replicas = [pod(f"a{i}", 0.5, 1) for i in range(100)]
    second = variant(
        "A", "H100-80GB", replicas, max_replicas=200, hpa={"metrics": [metric]}
    )
    second_hpa = rows(state(second))["A"].hpa
    assert second_hpa is not None
    assert second_hpa.desired_replicas == 200


# GPU inventory


def two_tier(free: dict[str, int | None]) -> dict[str, Any]:
    a = variant("A", "L40S", [pod(f"a{i}", 0.9, 6) for i in range(3)])
    b = variant("B", "H100-80GB", [pod(f"b{i}", 0.9, 6) for i in range(2)])
    return state(a, b, free=free)


def test_unknown_inventory_grows_cheapest() -> None:
    result = rows(two_tier({}))
    assert result["A"].target_replicas == 4
    assert result["B"].target_replicas == 2
    assert "inventory_unknown" in result["A"].reasons


def test_no_free_gpu_grows_next_cheapest() -> None:
    result = rows(two_tier({"L40S": 0, "H100-80GB": 4}))
    assert result["A"].target_replicas == 3
    assert result["B"].target_replicas == 3
    assert "no_free_gpu:L40S" in result["B"].reasons


# SLO sizing


def sized_state(
    arrival: float | None, with_tokens: bool = True
) -> tuple[dict[str, Any], float]:
    profile = LatencyProfile(7.0, 0.027, 20.0, 0.03, 256)
    capacity = replica_capacity_rps(profile, 1000.0, 200.0, 500.0, 8.0)
    a = variant(
        "A",
        "H100-80GB",
        [pod("a1", 0.85, 7), pod("a2", 0.85, 7)],
        service_class="interactive",
        profile=H100_PROFILE,
    )
    b = variant(
        "B",
        "A100-80GB",
        [pod("b1", 0.50, 1), pod("b2", 0.50, 1)],
        service_class="interactive",
        completion_rate=capacity,
    )
    demand: dict[str, Any] = {}
    if arrival is not None:
        demand["arrival_rate"] = arrival * capacity
    if with_tokens:
        demand.update(avg_input_tokens=1000, avg_output_tokens=200)
    document = state(a, b, service_classes=[INTERACTIVE], demand={"m": demand})
    return document, capacity


def test_slo_sizing_places_capacity_on_profiled_variant() -> None:
    # Arrivals of 5 replicas' worth, B serves 1: A needs 4 (5 at 0.85 headroom)
    document, _ = sized_state(5.0)
    result = run(document)
    decisions = {d.variant: d for d in result.decisions}
    assert decisions["A"].target_replicas == 5
    assert "scale_up:slo" in decisions["A"].reasons
    assert result.solver == "milp"
    assert result.success


def test_variant_without_profile_is_left_alone() -> None:
    document, _ = sized_state(5.0)
    decision = rows(document)["B"]
    assert decision.target_replicas == 2
    assert "no_profile:B" in decision.reasons


def test_no_sizing_data_falls_back_to_saturation() -> None:
    document, _ = sized_state(None, with_tokens=False)
    for v in document["variants"]:
        for replica in v["replicas"]:
            replica.update(kv_cache_usage=0.50, num_requests_waiting=2)
    result = run(document)
    decisions = {d.variant: d for d in result.decisions}
    assert decisions["A"].target_replicas == 2
    assert decisions["B"].target_replicas == 2
    assert "insufficient_data" in decisions["A"].reasons
    assert "insufficient_data" in decisions["B"].reasons
    assert result.solver is None


def test_nan_prompt_length_is_insufficient_data() -> None:
    document, _ = sized_state(5.0)
    document["demand"]["m"]["avg_input_tokens"] = math.nan
    decision = rows(document)["A"]
    assert "insufficient_data" in decision.reasons


def test_slo_reduction_is_one_step_with_victim() -> None:
    document, capacity = sized_state(0.5)
    document["variants"][0]["current_replicas"] = 4
    document["variants"][0]["replicas"] = [
        pod(f"a{i}", 0.10 + i / 100, 0, num_requests_running=i) for i in range(4)
    ]
    document["variants"][1]["replicas"] = [pod("b1", 0.1, 0), pod("b2", 0.1, 0)]
    decision = rows(document)["A"]
    assert decision.target_replicas == 3
    assert decision.victim_pods == ("a0",)
    assert capacity > 0


def test_slo_reduction_waits_after_recent_increase() -> None:
    document, _ = sized_state(0.5)
    document["now_s"] = 1000
    document["variants"][0]["current_replicas"] = 4
    document["variants"][0]["scale_events"] = [{"at_s": 900, "from": 3, "to": 4}]
    document["variants"][0]["replicas"] = [pod(f"a{i}", 0.1, 0) for i in range(4)]
    document["variants"][1]["replicas"] = [pod("b1", 0.1, 0), pod("b2", 0.1, 0)]
    decision = rows(document)["A"]
    assert decision.target_replicas == 4
    assert decision.bound_by == "stabilization"
    assert "stabilized" in decision.reasons


def test_slo_reduction_resumes_after_window() -> None:
    document, _ = sized_state(0.5)
    document["now_s"] = 1300
    document["variants"][0]["current_replicas"] = 4
    document["variants"][0]["scale_events"] = [{"at_s": 900, "from": 3, "to": 4}]
    document["variants"][0]["replicas"] = [pod(f"a{i}", 0.1, 0) for i in range(4)]
    document["variants"][1]["replicas"] = [pod("b1", 0.1, 0), pod("b2", 0.1, 0)]
    assert rows(document)["A"].target_replicas == 3


def test_scale_down_limit_counts_applied_events() -> None:
    document, _ = sized_state(0.5)
    document["now_s"] = 1000
    a = document["variants"][0]
    a["current_replicas"] = 4
    a["scale_down_limit"] = {"replicas": 1, "period_s": 600}
    a["scale_events"] = [{"at_s": 700, "from": 5, "to": 4}]
    a["replicas"] = [pod(f"a{i}", 0.1, 0) for i in range(4)]
    document["variants"][1]["replicas"] = [pod("b1", 0.1, 0), pod("b2", 0.1, 0)]
    decision = rows(document)["A"]
    assert decision.target_replicas == 4
    assert decision.bound_by == "scale_down_limit"


def test_slo_shortfall_reports_unserved() -> None:
    document, capacity = sized_state(20.0)
    document["variants"][0]["max_replicas"] = 4
    result = run(document)
    decision = {d.variant: d for d in result.decisions}["A"]
    assert decision.target_replicas == 4
    assert "capped_by_max" in decision.reasons
    # 20 replicas' worth arrive; B completes 1 and A's 4 replicas serve 4 at 0.85
    assert result.unserved["m"] == pytest.approx(20 * capacity - 5 * 0.85 * capacity)
    assert result.status == 1


def test_slo_priority_when_gpus_short() -> None:
    document, capacity = sized_state(3.0)
    batch_class = {"name": "batch", "priority": 2, "ttft_ms": 500, "itl_ms": 8.0}
    document["service_classes"].append(batch_class)
    other = variant(
        "C",
        "H100-80GB",
        [pod("c1", 0.5, 1)],
        service_class="batch",
        profile=H100_PROFILE,
    )
    other["model"] = "other"
    document["variants"].append(other)
    document["demand"]["other"] = {
        "arrival_rate": 3.0 * capacity,
        "avg_input_tokens": 1000,
        "avg_output_tokens": 200,
    }
    for accelerator in document["accelerators"]:
        if accelerator["name"] == "H100-80GB":
            accelerator["gpus_available"] = 2
    result = run(document)
    decisions = {d.variant: d for d in result.decisions}
    # m needs ceil(3 / 0.85) - 1 = 3 on A (1 more); other gets the 1 GPU left
    assert decisions["A"].target_replicas == 3
    assert decisions["C"].target_replicas == 2
    assert "other" in result.unserved
    assert "m" not in result.unserved


# Token capacity on the saturation fallback


def token_state(kv: float, waiting: float) -> dict[str, Any]:
    replicas = [
        pod(f"a{i}", kv, waiting, num_gpu_blocks=6250, block_size=16) for i in range(3)
    ]
    return state(
        variant("A", "L40S", replicas, profile={"max_num_seqs": 64}),
        demand={"m": {"avg_input_tokens": 1000, "avg_output_tokens": 200}},
    )


def test_reduction_needs_spare_tokens() -> None:
    # Pool 100,000 tokens, C = min(80,000, 64 * 1100 = 70,400). Load 3 * 40,000 +
    # 3 * 1,200 = 123,600 tokens; spare 211,200 - 123,600 / 0.7 = 34,629 < 70,400.
    decision = rows(token_state(0.40, 1))["A"]
    assert decision.target_replicas == 3
    assert "scale_down:no_spare_tokens" in decision.reasons


def test_reduction_with_spare_tokens() -> None:
    decision = rows(token_state(0.10, 1))["A"]
    assert decision.target_replicas == 2
    assert "scale_down:safe" in decision.reasons


def test_scale_up_sized_by_kv_tokens() -> None:
    # Load 3 * 76,000 + 3 * 6 * 1,200 = 249,600 tokens; / 0.85 = 293,647;
    # minus supply 211,200 leaves 82,447: two replicas of 70,400
    decision = rows(token_state(0.76, 6))["A"]
    assert decision.target_replicas == 5
    assert "sized_by_kv_tokens" in decision.reasons
