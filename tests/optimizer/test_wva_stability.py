"""Make-before-break, ITL-feasible growth and demand smoothing of wva."""

from __future__ import annotations

import re
from typing import Any

import pytest

from optimizer.forecast import forecast_arrival_rate, smoothed_arrival_rate
from optimizer.policy_wva import WvaDecision, decide_wva
from optimizer.queueing import LatencyProfile, replica_capacity_rps
from optimizer.state import parse_state

PRICES = {"H100-80GB": 12.29, "L40S": 1.86}
FAST = {"alpha": 7.0, "beta": 0.027, "gamma": 20.0, "delta": 0.03}
SLOW = {"alpha": 67.0, "beta": 0.5, "gamma": 67.0, "delta": 0.3}
CLASS = {"name": "interactive", "priority": 1, "ttft_ms": 2000, "itl_ms": 100}
TOKENS = {"avg_input_tokens": 1000, "avg_output_tokens": 200}


def pod(name: str, kv: float, waiting: float, **extra: Any) -> dict[str, Any]:
    return {"pod": name, "kv_cache_usage": kv, "num_requests_waiting": waiting, **extra}


def variant(
    name: str, accelerator: str, replicas: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "model": "m",
        "accelerator": accelerator,
        "service_class": "interactive",
        "min_replicas": 0,
        "max_replicas": 8,
        "current_replicas": len(replicas),
        "replicas": replicas,
    }
    row.update(fields)
    return row


def decide(*variants: dict[str, Any], demand: dict[str, Any]) -> dict[str, WvaDecision]:
    document = {
        "policy": "wva",
        "accelerators": [
            {"name": name, "usd_per_gpu_hour": price, "gpus_available": 8}
            for name, price in PRICES.items()
        ],
        "service_classes": [CLASS],
        "variants": list(variants),
        "demand": {"m": demand},
    }
    return {d.variant: d for d in decide_wva(parse_state(document)).decisions}


def capacity(profile: dict[str, float]) -> float:
    model = LatencyProfile(*profile.values(), max_batch=256)
    return replica_capacity_rps(model, 1000.0, 200.0, 2000.0, 100.0)


# Make-before-break


def test_swap_keeps_ready_replicas_while_new_start() -> None:
    # Given two ready H100 replicas and a far cheaper L40S with the same
    # latency, at demand that one H100 does not cover at headroom.
    h100 = variant("A", "H100-80GB", [pod("a1", 0.3, 0), pod("a2", 0.3, 0)])
    l40s = variant("B", "L40S", [], profile=FAST)
    h100["profile"] = FAST
    rate = 1.0 * capacity(FAST)

    # When the allocation moves load to the L40S.
    result = decide(h100, l40s, demand={"arrival_rate": rate, **TOKENS})

    # Then the L40S grows but the H100 keeps both ready replicas.
    assert result["B"].target_replicas > 0
    assert result["A"].target_replicas == 2
    assert "make_before_break" in result["A"].reasons
    assert result["A"].bound_by == "transition"
    assert result["A"].victim_pods == ()


def test_reduction_without_new_replicas_goes_ahead() -> None:
    # Given three idle H100 replicas and demand that one covers.
    h100 = variant(
        "A",
        "H100-80GB",
        [pod("a1", 0.1, 0), pod("a2", 0.1, 0), pod("a3", 0.1, 0)],
        profile=FAST,
    )
    slow = variant("B", "L40S", [], profile=SLOW, max_replicas=0)
    rate = 0.2 * capacity(FAST)

    result = decide(h100, slow, demand={"arrival_rate": rate, **TOKENS})

    assert result["A"].target_replicas == 2
    assert "make_before_break" not in result["A"].reasons


# Growth while every replica is saturated


def test_all_saturated_doubles_ready_capacity() -> None:
    # Given two saturated H100 replicas whose measured demand (completions
    # plus queue growth) is what they serve, because the router rejects the
    # rest.
    h100 = variant(
        "A", "H100-80GB", [pod("a1", 0.95, 9), pod("a2", 0.95, 9)], profile=FAST
    )
    rate = 2.0 * capacity(FAST)

    result = decide(h100, demand={"arrival_rate": rate, **TOKENS})

    assert result["A"].target_replicas == 4
    assert "scale_up:saturated_growth" in result["A"].reasons


def test_gateway_count_sizes_saturated_model() -> None:
    # Given the same two saturated replicas, but a demand that includes the
    # requests the gateway rejected: it is the whole load, not a lower bound.
    h100 = variant(
        "A", "H100-80GB", [pod("a1", 0.95, 9), pod("a2", 0.95, 9)], profile=FAST
    )
    rate = 2.0 * capacity(FAST)
    demand = {"arrival_rate": rate, "includes_rejected": True, **TOKENS}

    result = decide(h100, demand=demand)

    assert result["A"].target_replicas == 3
    assert "scale_up:saturated_growth" not in result["A"].reasons


def test_one_unsaturated_replica_sizes_by_demand() -> None:
    h100 = variant(
        "A", "H100-80GB", [pod("a1", 0.95, 9), pod("a2", 0.3, 0)], profile=FAST
    )
    rate = 2.0 * capacity(FAST)

    result = decide(h100, demand={"arrival_rate": rate, **TOKENS})

    assert result["A"].target_replicas == 3
    assert "scale_up:saturated_growth" not in result["A"].reasons


# Variant choice on a saturation trigger


def test_saturation_grows_variant_meeting_itl() -> None:
    # Given a saturated model without an arrival rate (saturation rules
    # decide), where the L40S is cheaper per replica-hour but its latency
    # model serves far less within the 100 ms ITL than the H100.
    h100 = variant("A", "H100-80GB", [pod("a1", 0.95, 9)], profile=FAST)
    l40s = variant("B", "L40S", [pod("b1", 0.95, 9)], profile=SLOW)
    assert PRICES["L40S"] < PRICES["H100-80GB"]
    assert PRICES["L40S"] / capacity(SLOW) > PRICES["H100-80GB"] / capacity(FAST)

    result = decide(h100, l40s, demand=dict(TOKENS))

    assert "insufficient_data" in result["A"].reasons
    assert result["A"].target_replicas > 1
    assert result["B"].target_replicas == 1


def test_saturation_without_lengths_ranks_decode_throughput() -> None:
    # Given no token lengths, and an L40S that meets the 100 ms ITL only
    # with small batches.
    h100 = variant("A", "H100-80GB", [pod("a1", 0.95, 9)], profile=FAST)
    l40s = variant("B", "L40S", [pod("b1", 0.95, 9)], profile=SLOW)

    result = decide(h100, l40s, demand={})

    assert result["A"].target_replicas > 1
    assert result["B"].target_replicas == 1


def test_saturation_skips_variant_too_slow_for_itl() -> None:
    # Given no token lengths, and an L40S whose single-request step of
    # 120 ms already misses the 100 ms ITL.
    too_slow = {"alpha": 120.0, "beta": 0.5, "gamma": 120.0, "delta": 0.3}
    h100 = variant("A", "H100-80GB", [pod("a1", 0.95, 9)], profile=FAST)
    l40s = variant("B", "L40S", [pod("b1", 0.95, 9)], profile=too_slow)

    result = decide(h100, l40s, demand={})

    assert result["A"].target_replicas > 1
    assert result["B"].target_replicas == 1


# Demand smoothing and the dead band


def sizing_rates(rates: list[float], smoothed: bool) -> list[float]:
    """Return the rate sized for at each 30 s cycle of `rates`."""
    history: list[tuple[float, float]] = []
    sized: list[float] = []
    for index, rate in enumerate(rates):
        now_s = 30.0 * index
        history.append((now_s, rate))
        if smoothed:
            sized.append(smoothed_arrival_rate(history, now_s, 120.0).rate)
        else:
            sized.append(forecast_arrival_rate(history, now_s, 120.0).rate)
    return sized


def reversals(replicas: list[int]) -> int:
    directions = [
        1 if b > a else -1
        for a, b in zip(replicas, replicas[1:], strict=False)
        if b != a
    ]
    return sum(1 for a, b in zip(directions, directions[1:], strict=False) if a != b)


def test_smoothing_prevents_reversals_on_swings() -> None:
    # Given completions plus queue growth that swing 2-33 req/s around a flat
    # 15 req/s, and replicas of 5 req/s at 0.85 headroom.
    rates = [15.0] * 10 + [2.0, 33.0, 8.0, 26.0, 4.0, 30.0, 12.0, 20.0] * 4

    def replicas(sized: list[float]) -> list[int]:
        return [int(-(-rate // (5.0 * 0.85))) for rate in sized]

    raw = reversals(replicas(sizing_rates(rates, smoothed=False)))
    smooth = reversals(replicas(sizing_rates(rates, smoothed=True)))

    assert raw >= 4
    assert smooth <= 1


def test_smoothing_keeps_step_up_fast() -> None:
    # Given a step from 10 to 30 req/s.
    sized = sizing_rates([10.0] * 10 + [30.0] * 4, smoothed=True)

    # Then within two cycles the sized rate covers two thirds of the new level.
    assert sized[11] >= 20.0


def test_scale_down_waits_through_hold_window() -> None:
    # Given a drop from 30 to 10 req/s at cycle 10.
    sized = sizing_rates([30.0] * 10 + [10.0] * 14, smoothed=True)

    # Then the sized rate stays at 30 through the 300 s hold, then falls.
    assert min(sized[10:20]) >= 29.9
    assert sized[-1] < 15.0


def test_dead_band_holds_small_demand_change() -> None:
    # Given two H100 replicas at demand inside the band between the
    # scale-up (0.85) and scale-down (0.70) headrooms, and a cheaper L40S
    # with the same latency.
    h100 = variant(
        "A", "H100-80GB", [pod("a1", 0.3, 0), pod("a2", 0.3, 0)], profile=FAST
    )
    l40s = variant("B", "L40S", [], profile=FAST)
    rate = 1.5 * capacity(FAST)

    result = decide(h100, l40s, demand={"arrival_rate": rate, **TOKENS})

    assert result["A"].target_replicas == 2
    assert result["B"].target_replicas == 0
    assert "dead_band" in result["A"].reasons


def two_h100_short_by(shortfall: float) -> dict[str, WvaDecision]:
    # Two H100 replicas whose capacity is `shortfall` below the demand at
    # the 0.85 scale-up headroom, and an L40S of low capacity that could
    # fill a small gap.
    h100 = variant(
        "A", "H100-80GB", [pod("a1", 0.3, 0), pod("a2", 0.3, 0)], profile=FAST
    )
    l40s = variant("B", "L40S", [], profile=SLOW)
    rate = 2.0 * capacity(FAST) * 0.85 / (1.0 - shortfall)
    return decide(h100, l40s, demand={"arrival_rate": rate, **TOKENS})


def test_shortfall_within_tolerance_holds() -> None:
    result = two_h100_short_by(0.04)

    assert result["A"].target_replicas == 2
    assert result["B"].target_replicas == 0
    assert "dead_band" in result["A"].reasons


def test_shortfall_past_tolerance_scales_up() -> None:
    result = two_h100_short_by(0.06)

    added = result["A"].target_replicas - 2 + result["B"].target_replicas
    assert added >= 1
    assert "dead_band" not in result["A"].reasons


@pytest.mark.parametrize(
    ("history", "options", "named"),
    [
        ([], {}, "history"),
        ([(0.0, -1.0)], {}, "history[0] rate"),
        ([(0.0, 1.0)], {"time_constant_s": 0.0}, "time_constant_s"),
        ([(0.0, 1.0)], {"hold_s": -5.0}, "hold_s"),
    ],
)
def test_smoothed_rate_rejects_invalid_input(
    history: list[tuple[float, float]], options: dict[str, float], named: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        smoothed_arrival_rate(history, 0.0, 120.0, **options)
