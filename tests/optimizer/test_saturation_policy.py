"""Saturation policy wva-v1 on fixed states."""

from __future__ import annotations

import math

import pytest

from optimizer.saturation import (
    ModelAnalysis,
    ReplicaSample,
    SaturationConfig,
    VariantDecision,
    VariantInput,
    analyse_model,
    check_scale_down,
)

H100 = 12.29
H200_X2 = 21.20
A100 = 5.12
L40S = 1.86


def replica(
    pod: str,
    kv: float | None,
    waiting: float | None,
    running: float | None = None,
    **kwargs: object,
) -> ReplicaSample:
    return ReplicaSample(pod, kv, waiting, running, **kwargs)  # type: ignore[arg-type]


def variant(
    name: str,
    price: float,
    replicas: tuple[ReplicaSample, ...],
    current: int | None = None,
    min_replicas: int = 1,
    max_replicas: int = 8,
    ready: int | None = None,
    pending: int = 0,
    desired: int | None = None,
) -> VariantInput:
    live = [r for r in replicas if not r.terminating and r.phase != "Pending"]
    count = len(live) if current is None else current
    return VariantInput(
        name=name,
        usd_per_replica_hour=price,
        current_replicas=count,
        ready_replicas=len(live) if ready is None else ready,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        replicas=replicas,
        pending_replicas=pending,
        desired_replicas=desired,
    )


def decision_of(analysis: ModelAnalysis, name: str) -> VariantDecision:
    return next(d for d in analysis.decisions if d.variant == name)


def single(*replicas: ReplicaSample, **kwargs: object) -> VariantDecision:
    analysis = analyse_model([variant("A", H100, replicas, **kwargs)])  # type: ignore[arg-type]
    return analysis.decisions[0]


# Worked cases of the policy


def test_kv_spare_just_enough_no_change() -> None:
    # KV 0.65 and 0.72: average spare 0.115
    analysis = analyse_model(
        [variant("A", H100, (replica("a1", 0.65, 0), replica("a2", 0.72, 0)))]
    )
    assert analysis.spare_kv == pytest.approx(0.115)
    assert analysis.decisions[0].target_replicas == 2
    assert "scale_down:unsafe" in analysis.decisions[0].reasons


def test_kv_spare_short_scales_up() -> None:
    # KV 0.65 and 0.76: average spare 0.095
    analysis = analyse_model(
        [variant("A", H100, (replica("a1", 0.65, 0), replica("a2", 0.76, 0)))]
    )
    assert analysis.spare_kv == pytest.approx(0.095)
    assert analysis.decisions[0].target_replicas == 3
    assert analysis.decisions[0].reasons[0] == "scale_up:spare_kv"


def test_queue_spare_short_scales_up() -> None:
    # Queues 3 and 3: spare 2 < 3
    decision = single(replica("a1", 0.1, 3), replica("a2", 0.1, 3))
    assert decision.target_replicas == 3
    assert decision.reasons == ("scale_up:spare_queue",)


def test_three_light_replicas_scale_down() -> None:
    # KV 0.20, 0.30, 0.25 and queue 1: after removal 0.375 KV and 1.5 queue
    analysis = analyse_model(
        [
            variant(
                "A",
                H100,
                (
                    replica("a1", 0.20, 1),
                    replica("a2", 0.30, 1),
                    replica("a3", 0.25, 1),
                ),
            )
        ]
    )
    check = analysis.scale_down_check
    assert check is not None
    assert check.kv_after == pytest.approx(0.375)
    assert check.queue_after == pytest.approx(1.5)
    assert check.spare_kv_after == pytest.approx(0.425)
    assert check.spare_queue_after == pytest.approx(3.5)
    assert analysis.decisions[0].target_replicas == 2
    assert analysis.decisions[0].reasons == ("scale_down:safe",)
    assert analysis.decisions[0].victim_pod == "a1"


def test_two_busy_replicas_unsafe_down() -> None:
    # KV 0.70 and 0.75: spread over one, 1.45 is past the threshold
    check = check_scale_down(
        [replica("a1", 0.70, 0), replica("a2", 0.75, 0)], SaturationConfig()
    )
    assert check.kv_after == pytest.approx(1.45)
    assert check.safe is False


def test_two_busy_replicas_scale_up() -> None:
    # The same two replicas average spare KV 0.075: the policy adds one
    analysis = analyse_model(
        [variant("A", H100, (replica("a1", 0.70, 0), replica("a2", 0.75, 0)))]
    )
    assert analysis.decisions[0].target_replicas == 3


# Missing data and the transition gate


def test_unreadable_kv_blocks_every_decision() -> None:
    # Six replicas with 1 waiting and no KV sample
    replicas = tuple(replica(f"a{i}", None, 1) for i in range(1, 7))
    decision = single(*replicas, max_replicas=12)
    assert decision.target_replicas == 6
    assert decision.bound_by == "missing_data"
    assert decision.reasons[0] == "missing_metrics:a1,a2,a3,a4,a5,a6"


def test_unreadable_kv_blocks_scale_up_too() -> None:
    replicas = tuple(replica(f"a{i}", None, 5) for i in range(1, 7))
    decision = single(*replicas, max_replicas=12)
    assert decision.target_replicas == 6


def test_missing_sample_is_not_idle() -> None:
    # r1 and r2 light, r3 without a sample: zero-filling would give 3 -> 2
    analysis = analyse_model(
        [
            variant(
                "A",
                H100,
                (
                    replica("r1", 0.30, 1),
                    replica("r2", 0.35, 1),
                    replica("r3", None, None),
                ),
            )
        ]
    )
    decision = analysis.decisions[0]
    assert decision.target_replicas == 3
    assert decision.bound_by == "missing_data"
    assert "missing_metrics:r3" in decision.reasons
    assert analysis.spare_kv == pytest.approx(0.475)
    assert analysis.spare_queue == pytest.approx(4.0)


def test_absent_sample_row_is_missing() -> None:
    # r3 is ready but has no sample row at all; dropping it would give 3 -> 2
    analysis = analyse_model(
        [
            variant(
                "A",
                H100,
                (replica("r1", 0.30, 1), replica("r2", 0.35, 1)),
                current=3,
                ready=3,
            )
        ]
    )
    decision = analysis.decisions[0]
    assert decision.target_replicas == 3
    assert "missing_samples:A=1" in decision.reasons


def test_missing_and_pending_hold_both_variants() -> None:
    # A: r1 saturated, r2 missing, r3 pending; B: b1 saturated
    a = variant(
        "A",
        H100,
        (
            replica("r1", 0.95, 12),
            replica("r2", None, None),
            replica("r3", None, None, phase="Pending", ready=False),
        ),
        current=3,
        ready=2,
    )
    b = variant("B", H200_X2, (replica("b1", 0.85, 6),))
    analysis = analyse_model([a, b])
    assert decision_of(analysis, "A").target_replicas == 3
    assert decision_of(analysis, "B").target_replicas == 1
    assert decision_of(analysis, "A").bound_by == "missing_data"
    assert "transition_pending" in analysis.reasons
    assert "pending:r3" in analysis.reasons
    assert "saturated:r1,b1" in analysis.reasons
    assert analysis.pending == ("r3",)


def test_stale_sample_blocks_reduction() -> None:
    # a1..a7 light; a8 has no queue sample and a 90 s old KV sample
    replicas = tuple(replica(f"a{i}", 0.10, 0) for i in range(1, 8))
    stale = replica("a8", 0.10, None, age_s=90.0)
    decision = single(*replicas, stale)
    assert decision.target_replicas == 8
    assert "missing_metrics:a8" in decision.reasons


def test_old_sample_alone_blocks_reduction() -> None:
    replicas = tuple(replica(f"a{i}", 0.10, 0) for i in range(1, 8))
    stale = replica("a8", 0.10, 0, age_s=90.0)
    decision = single(*replicas, stale)
    assert decision.target_replicas == 8


def test_fresh_sample_age_is_reporting() -> None:
    replicas = tuple(replica(f"a{i}", 0.10, 0, age_s=30.0) for i in range(1, 9))
    decision = single(*replicas)
    assert decision.target_replicas == 7


def test_other_model_still_scales() -> None:
    # c1 and c2: spare KV (0.02 + 0.04) / 2 = 0.03, below 0.10
    analysis = analyse_model(
        [variant("C", L40S, (replica("c1", 0.78, 1), replica("c2", 0.76, 1)))]
    )
    assert analysis.spare_kv == pytest.approx(0.03)
    assert analysis.spare_queue == pytest.approx(4.0)
    assert analysis.decisions[0].target_replicas == 3
    assert analysis.decisions[0].reasons == ("scale_up:spare_kv",)


def test_unrealised_decision_holds() -> None:
    decision = single(replica("a1", 0.9, 9), replica("a2", 0.9, 9), desired=3)
    assert decision.target_replicas == 2
    assert decision.bound_by == "transition"
    assert decision.reasons == ("transition_pending",)


def test_pending_count_holds() -> None:
    decision = single(
        replica("a1", 0.9, 9), replica("a2", 0.9, 9), current=3, pending=1
    )
    assert decision.target_replicas == 3
    assert "pending:A=1" in decision.reasons


@pytest.mark.parametrize(
    ("kv", "waiting"),
    [
        (float("nan"), 2.0),
        (float("-inf"), 2.0),
        (1.3, 2.0),
        (-0.1, 2.0),
        (0.5, float("inf")),
        (0.5, -1.0),
    ],
)
def test_invalid_value_is_not_reporting(kv: float, waiting: float) -> None:
    analysis = analyse_model(
        [
            variant(
                "A",
                H100,
                (
                    replica("a1", kv, waiting),
                    replica("a2", 0.5, 2),
                    replica("a3", 0.6, 2),
                ),
            )
        ]
    )
    assert analysis.decisions[0].target_replicas == 3
    assert analysis.not_reporting == ("a1",)
    assert analysis.spare_kv is not None
    assert math.isfinite(analysis.spare_kv)


def test_kv_of_one_is_saturated() -> None:
    analysis = analyse_model(
        [variant("A", H100, (replica("a1", 1.0, 0), replica("a2", 0.1, 0)))]
    )
    assert analysis.saturated == ("a1",)


# Variant choice


def test_older_metric_name_mix_scales_down_expensive() -> None:
    # A on H100 (a1 0.42, a2 0.47); B on A100 (b1 0.81, b2 0.30, b3 0.55)
    a = variant("A", H100, (replica("a1", 0.42, 0), replica("a2", 0.47, 0)))
    b = variant(
        "B",
        A100,
        (replica("b1", 0.81, 0), replica("b2", 0.30, 0), replica("b3", 0.55, 0)),
    )
    analysis = analyse_model([a, b])
    assert analysis.saturated == ("b1",)
    assert analysis.spare_kv == pytest.approx(0.365)
    assert analysis.scale_down_check is not None
    assert analysis.scale_down_check.kv_after == pytest.approx(0.58)
    assert decision_of(analysis, "A").target_replicas == 1
    assert decision_of(analysis, "A").victim_pod == "a1"
    assert decision_of(analysis, "B").target_replicas == 3


def test_victim_has_fewest_inflight_tokens() -> None:
    # a1 (kv 0.55, run 14), a2 (kv 0.02, run 0), a3 (kv 0.10, run 3)
    analysis = analyse_model(
        [
            variant(
                "A",
                H100,
                (
                    replica("a1", 0.55, 0, 14),
                    replica("a2", 0.02, 0, 0),
                    replica("a3", 0.10, 0, 3),
                ),
            )
        ]
    )
    decision = analysis.decisions[0]
    assert analysis.spare_kv == pytest.approx(0.5767, abs=1e-4)
    assert decision.target_replicas == 2
    assert decision.victim_pod == "a2"


def test_victim_ties_broken_by_running() -> None:
    analysis = analyse_model(
        [
            variant(
                "A",
                H100,
                (
                    replica("a1", 0.1, 0, 5),
                    replica("a2", 0.1, 0, 2),
                    replica("a3", 0.1, 0, 9),
                ),
            )
        ]
    )
    assert analysis.decisions[0].victim_pod == "a2"


def test_terminating_replicas_are_not_capacity() -> None:
    # a1 saturated; a2..a4 terminating but still exporting light values
    terminating = tuple(
        replica(f"a{i}", 0.30, 0, terminating=True, ready=False) for i in (2, 3, 4)
    )
    analysis = analyse_model(
        [
            variant(
                "A", L40S, (replica("a1", 0.95, 20), *terminating), current=1, ready=1
            )
        ]
    )
    assert analysis.spare_kv == 0.0
    assert analysis.spare_queue == 0.0
    assert analysis.decisions[0].target_replicas == 2


def test_stuck_queues_keep_count() -> None:
    queues = (213, 78, 40, 32, 20, 12, 0)
    replicas = tuple(replica(f"a{i}", 0.0, q, 0) for i, q in enumerate(queues, 1))
    analysis = analyse_model([variant("A", L40S, replicas)])
    decision = analysis.decisions[0]
    assert len(analysis.saturated) == 6
    assert analysis.spare_kv == pytest.approx(0.80)
    assert analysis.spare_queue == pytest.approx(5.0)
    assert decision.target_replicas == 7
    assert "scale_down:too_few_non_saturated" in decision.reasons


def test_busy_fleet_short_queue_spare() -> None:
    # 29 replicas at KV 0.5; waiting 26 x 3 and 3 x 4: spare 1.897
    replicas = tuple(
        replica(f"a{i}", 0.5, 3 if i < 26 else 4, 103 if i < 6 else 102)
        for i in range(29)
    )
    analysis = analyse_model([variant("A", H100, replicas, max_replicas=40)])
    assert analysis.spare_queue == pytest.approx(1.8966, abs=1e-4)
    assert analysis.decisions[0].target_replicas == 30


def test_scale_up_goes_to_cheapest() -> None:
    a = variant("A", H100, (replica("a1", 0.79, 0),))
    b = variant("B", L40S, (replica("b1", 0.79, 0),))
    analysis = analyse_model([a, b])
    assert decision_of(analysis, "B").target_replicas == 2
    assert decision_of(analysis, "A").target_replicas == 1


def test_price_tie_broken_by_name() -> None:
    a = variant("beta", L40S, (replica("a1", 0.79, 0),))
    b = variant("alpha", L40S, (replica("b1", 0.79, 0),))
    analysis = analyse_model([a, b])
    assert decision_of(analysis, "alpha").target_replicas == 2
    assert decision_of(analysis, "beta").target_replicas == 1


def test_cheapest_at_max_skipped() -> None:
    a = variant("A", H100, (replica("a1", 0.79, 0),))
    b = variant("B", L40S, (replica("b1", 0.79, 0),), max_replicas=1)
    analysis = analyse_model([a, b])
    assert decision_of(analysis, "A").target_replicas == 2
    assert decision_of(analysis, "B").target_replicas == 1


def test_every_variant_at_max_is_capped() -> None:
    a = variant(
        "A", L40S, tuple(replica(f"a{i}", 0.9, 6) for i in range(4)), max_replicas=4
    )
    b = variant("B", H100, (replica("b1", 0.9, 6),), max_replicas=1)
    analysis = analyse_model([a, b])
    decision = decision_of(analysis, "A")
    assert decision.target_replicas == 4
    assert decision.bound_by == "max_replicas"
    assert "capped_by_max" in decision.reasons
    assert decision.message == "wants 5, capped at 4 (max)"


def test_scale_down_respects_min() -> None:
    replicas = (replica("a1", 0.1, 0), replica("a2", 0.1, 0), replica("a3", 0.1, 0))
    decision = single(*replicas, min_replicas=3)
    assert decision.target_replicas == 3
    assert decision.bound_by == "min_replicas"
    assert decision.message == "wants 2, capped at 3 (min)"


def test_scale_down_skips_variant_at_min() -> None:
    a = variant(
        "A", H100, (replica("a1", 0.1, 0), replica("a2", 0.1, 0)), min_replicas=2
    )
    b = variant("B", L40S, (replica("b1", 0.1, 0), replica("b2", 0.1, 0)))
    analysis = analyse_model([a, b])
    assert decision_of(analysis, "A").target_replicas == 2
    assert decision_of(analysis, "B").target_replicas == 1


def test_single_replica_variants_not_reduced() -> None:
    a = variant("A", H100, (replica("a1", 0.1, 0),))
    b = variant("B", L40S, (replica("b1", 0.1, 0),))
    analysis = analyse_model([a, b])
    assert [d.target_replicas for d in analysis.decisions] == [1, 1]
    assert "no_candidate" in analysis.reasons


def test_zero_replica_variant_not_chosen() -> None:
    a = variant("A", H100, (replica("a1", 0.79, 0),))
    b = variant("B", L40S, (), current=0, min_replicas=0)
    analysis = analyse_model([a, b])
    assert decision_of(analysis, "A").target_replicas == 2
    assert decision_of(analysis, "B").target_replicas == 0


def test_spare_on_trigger_passes_down_check() -> None:
    # Spread over one replica, queue 2.0 leaves spare 3.0, on the trigger
    decision = single(replica("a1", 0.1, 1), replica("a2", 0.1, 1))
    assert decision.target_replicas == 1


def test_config_rejects_percent_threshold() -> None:
    with pytest.raises(ValueError, match="kv_cache_threshold"):
        SaturationConfig(kv_cache_threshold=80)


def test_variant_rejects_min_above_max() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        variant("A", H100, (), current=0, min_replicas=3, max_replicas=2)
