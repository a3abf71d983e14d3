"""Kubernetes HPA algorithm (autoscaling/v2 with behavior set)."""

from __future__ import annotations

from collections.abc import Mapping

from optimizer.hpa import (
    HpaBehavior,
    HpaInput,
    HpaMetric,
    HpaPod,
    HpaResult,
    hpa_desired_replicas,
)

NOW = 10_000.0
# A recommendation made long before the 300 s window, so that a scale-down
# is not held by the first recommendation the HPA records.
OLD_HISTORY = ((NOW - 1000.0, 1),)


def pods_metric(
    values: Mapping[str, float | None], target: float, name: str = "m"
) -> HpaMetric:
    return HpaMetric(name, "pods", target, pod_values=dict(values))


def running(count: int, prefix: str = "p") -> tuple[HpaPod, ...]:
    return tuple(HpaPod(f"{prefix}{i}") for i in range(count))


def sync(
    current: int,
    pods: tuple[HpaPod, ...],
    *metrics: HpaMetric,
    min_replicas: int = 1,
    max_replicas: int = 100,
    history: tuple[tuple[float, int], ...] = OLD_HISTORY,
    now: float = NOW,
    behavior: HpaBehavior | None = None,
) -> HpaResult:
    return hpa_desired_replicas(
        HpaInput(
            current_replicas=current,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            pods=pods,
            metrics=metrics,
            now_s=now,
            recommendations=history,
            behavior=behavior or HpaBehavior(),
        )
    )


def test_invalid_metric_holds_scale_down() -> None:
    # Given 6 replicas with 1 waiting each (target 4) and a failed KV query
    pods = running(6)
    waiting = pods_metric({p.name: 1.0 for p in pods}, 4.0, "num_requests_waiting")
    kv = HpaMetric("kv", "pods", 0.6, pod_values={p.name: None for p in pods})
    # When the HPA syncs
    result = sync(6, pods, waiting, kv, max_replicas=12)
    # Then the count stays and the reason names the invalid metric
    assert result.desired_replicas == 6
    assert "invalid_metric:kv" in result.reasons
    assert result.bound_by == "invalid_metric"
    assert result.metrics[0].proposal == 2


def test_invalid_metric_allows_scale_up() -> None:
    pods = running(6)
    waiting = pods_metric({p.name: 5.0 for p in pods}, 4.0, "num_requests_waiting")
    kv = HpaMetric("kv", "pods", 0.6, pod_values={}, valid=False)
    result = sync(6, pods, waiting, kv, max_replicas=12)
    assert result.desired_replicas == 8
    assert "invalid_metric:kv" in result.reasons


def test_milli_average_inside_band_top() -> None:
    # 44 requests over 10 pods is 4400m: ratio 1.1 is inside the band
    pods = running(10)
    values = {p.name: (5.0 if i < 4 else 4.0) for i, p in enumerate(pods)}
    result = sync(10, pods, pods_metric(values, 4.0))
    assert result.metrics[0].average == 4.4
    assert result.desired_replicas == 10


def test_ratio_just_above_band_scales() -> None:
    # 45 requests over 10 pods: ratio 1.125, ceil(11.25) = 12
    pods = running(10)
    values = {p.name: (5.0 if i < 5 else 4.0) for i, p in enumerate(pods)}
    result = sync(10, pods, pods_metric(values, 4.0))
    assert result.desired_replicas == 12


def test_ratio_band_bottom_inclusive() -> None:
    pods = running(10)
    result = sync(10, pods, pods_metric({p.name: 3.6 for p in pods}, 4.0))
    assert result.metrics[0].ratio == 0.9
    assert result.desired_replicas == 10


def test_integer_division_truncates_average() -> None:
    # 1100m + 1100m + 1101m = 3301m over 3 pods is 1100m, not 1100.33m
    pods = running(3)
    values = {"p0": 1.1, "p1": 1.1, "p2": 1.1001}
    result = sync(3, pods, pods_metric(values, 1.0))
    assert result.metrics[0].average == 1.1
    assert result.desired_replicas == 3


def test_busy_fleet_average_inside_band() -> None:
    # 6 pods at 103 and 23 at 102 running: 2,964,000m / 29 = 102,206m
    pods = running(29)
    values = {p.name: (103.0 if i < 6 else 102.0) for i, p in enumerate(pods)}
    result = sync(29, pods, pods_metric(values, 100.0), max_replicas=40)
    assert result.metrics[0].average == 102.206
    assert result.desired_replicas == 29


def test_missing_pod_counts_as_target_on_scale_down() -> None:
    # 19 pods at 0.85 of target and one without a sample: (19 * 850m + 1000m) / 20
    pods = running(20)
    values: dict[str, float | None] = {p.name: 0.85 for p in pods}
    values["p19"] = None
    result = sync(20, pods, pods_metric(values, 1.0))
    assert result.metrics[0].ratio == 0.857
    assert result.desired_replicas == 18


def test_missing_pod_counts_as_zero_on_scale_up() -> None:
    # 10, 10 and two pods without a sample (target 4): 20000m / 4 = 5000m, 5 replicas
    pods = running(4)
    values = {"p0": 10.0, "p1": 10.0, "p2": None, "p3": None}
    result = sync(4, pods, pods_metric(values, 4.0))
    assert result.metrics[0].ratio == 1.25
    assert result.desired_replicas == 5


def test_corrected_ratio_flipping_direction_holds() -> None:
    # 5 and two missing (target 4): 1.25 becomes 0.4165, so the count stays
    pods = running(3)
    values = {"p0": 5.0, "p1": None, "p2": None}
    result = sync(3, pods, pods_metric(values, 4.0, "waiting"))
    assert result.desired_replicas == 3
    assert "direction_flipped:waiting" in result.reasons


def test_corrected_ratio_in_band_holds() -> None:
    # 19 pods at 1.15 and one pending: corrected 21850m / 20 = 1092m, in band
    pods = (*running(19), HpaPod("new", phase="Pending"))
    values = {p.name: 1.15 for p in pods[:19]}
    result = sync(20, pods, pods_metric(values, 1.0, "waiting"))
    assert result.desired_replicas == 20
    assert "within_tolerance:waiting" in result.reasons


def test_pending_pod_left_out_on_scale_down() -> None:
    pods = (*running(2), HpaPod("new", phase="Pending"))
    result = sync(3, pods, pods_metric({"p0": 2.0, "p1": 2.0}, 4.0))
    assert result.desired_replicas == 1


def test_not_ready_pod_with_sample_counts() -> None:
    # Readiness matters for CPU only
    pods = (HpaPod("p0"), HpaPod("p1", ready=False))
    result = sync(2, pods, pods_metric({"p0": 8.0, "p1": 8.0}, 4.0))
    assert result.desired_replicas == 4


def test_terminating_pod_left_out() -> None:
    pods = (HpaPod("p0"), HpaPod("p1"), HpaPod("old", terminating=True))
    values = {"p0": 4.0, "p1": 4.0, "old": 0.0}
    result = sync(2, pods, pods_metric(values, 4.0))
    assert result.metrics[0].ratio == 1.0
    assert result.desired_replicas == 2


def test_largest_proposal_wins() -> None:
    pods = running(4)
    low = pods_metric({p.name: 2.0 for p in pods}, 4.0, "low")
    high = pods_metric({p.name: 9.0 for p in pods}, 4.0, "high")
    result = sync(4, pods, low, high)
    assert result.desired_replicas == 8
    assert "proposal:high=9" in result.reasons


def test_no_usable_metric_is_unknown() -> None:
    pods = running(3)
    kv = HpaMetric("kv", "pods", 0.6, pod_values={p.name: None for p in pods})
    queue = HpaMetric("queue", "external", 10.0, value=None)
    result = sync(3, pods, kv, queue)
    assert result.desired_replicas is None
    assert result.bound_by == "missing_data"


def test_no_metrics_configured_is_unknown() -> None:
    result = sync(3, running(3))
    assert result.desired_replicas is None


def test_nan_sample_counts_as_missing() -> None:
    pods = running(2)
    # 8 on p1 and NaN on p0 (target 4): p0 counts as 0, corrected ratio 1.0
    result = sync(2, pods, pods_metric({"p0": float("nan"), "p1": 8.0}, 4.0))
    assert result.metrics[0].average == 8.0
    assert result.desired_replicas == 2


def test_external_average_value_ratio() -> None:
    # 35 over 3 replicas at 10 per replica: ratio 1.167, ceil(35 / 10) = 4
    metric = HpaMetric("queue", "external", 10.0, value=35.0)
    result = sync(3, running(3), metric)
    assert result.desired_replicas == 4


def test_external_inside_band_stays() -> None:
    metric = HpaMetric("queue", "external", 10.0, value=31.0)
    result = sync(3, running(3), metric)
    assert result.desired_replicas == 3


def test_first_sync_records_current() -> None:
    # Given no history, a proposal of 2 for 6 replicas
    pods = running(6)
    result = sync(6, pods, pods_metric({p.name: 1.0 for p in pods}, 4.0), history=())
    # Then the recorded current count holds the scale-down
    assert result.desired_replicas == 6
    assert result.recommendations == ((NOW, 6), (NOW, 2))
    assert result.bound_by == "stabilization"


def test_window_keeps_recent_recommendation() -> None:
    pods = running(6)
    metric = pods_metric({p.name: 1.0 for p in pods}, 4.0)
    result = sync(6, pods, metric, history=((NOW - 299.0, 5),))
    assert result.desired_replicas == 5


def test_window_excludes_recommendation_at_cutoff() -> None:
    pods = running(6)
    metric = pods_metric({p.name: 1.0 for p in pods}, 4.0)
    result = sync(6, pods, metric, history=((NOW - 300.0, 5),))
    assert result.desired_replicas == 2
    assert result.recommendations == ((NOW, 2),)


def test_configured_window_applies() -> None:
    pods = running(6)
    metric = pods_metric({p.name: 1.0 for p in pods}, 4.0)
    behavior = HpaBehavior(scale_down_stabilization_s=60.0)
    result = sync(6, pods, metric, history=((NOW - 100.0, 5),), behavior=behavior)
    assert result.desired_replicas == 2


def test_scale_up_limit_then_max() -> None:
    # Given 50 replicas at 8 times the target and max 200
    first = sync(
        50,
        running(50),
        pods_metric({f"p{i}": 8.0 for i in range(50)}, 1.0),
        max_replicas=200,
        history=(),
    )
    # Then the first sync doubles to 100
    assert first.desired_replicas == 100
    assert first.bound_by == "scale_up_limit"
    # When the same load is spread over 100 replicas 15 s later
    second = sync(
        100,
        running(100),
        pods_metric({f"p{i}": 4.0 for i in range(100)}, 1.0),
        max_replicas=200,
        history=first.recommendations,
        now=NOW + 15.0,
    )
    # Then the second sync reaches the max of 200
    assert second.desired_replicas == 200
    assert second.bound_by == "max_replicas"
    assert "capped_by_max" in second.reasons


def test_scale_up_limit_four_pods() -> None:
    # 2 replicas: +100% is 4, +4 pods is 6
    pods = running(2)
    result = sync(2, pods, pods_metric({"p0": 20.0, "p1": 20.0}, 4.0))
    assert result.desired_replicas == 6


def test_scale_down_percent_limit() -> None:
    pods = running(10)
    behavior = HpaBehavior(scale_down_percent=50.0)
    metric = pods_metric({p.name: 0.5 for p in pods}, 4.0)
    result = sync(10, pods, metric, behavior=behavior)
    assert result.desired_replicas == 5
    assert result.bound_by == "scale_down_limit"


def test_scale_down_clamped_to_min() -> None:
    pods = running(6)
    result = sync(
        6, pods, pods_metric({p.name: 0.1 for p in pods}, 4.0), min_replicas=3
    )
    assert result.desired_replicas == 3
    assert result.bound_by == "min_replicas"


def test_current_above_max_goes_to_max() -> None:
    pods = running(6)
    result = sync(
        6, pods, pods_metric({p.name: 4.0 for p in pods}, 4.0), max_replicas=4
    )
    assert result.desired_replicas == 4


def test_zero_replicas_disables_scaling() -> None:
    metric = HpaMetric("queue", "external", 10.0, value=50.0)
    result = sync(0, (), metric)
    assert result.desired_replicas == 0
    assert result.reasons == ("scaling_disabled",)


def test_ratio_one_with_missing_pod() -> None:
    # At exactly the target Kubernetes treats the missing pod as a scale-up
    # and fills 0: (4000m + 0) / 2 pods is ratio 0.5 and ceil(0.5 * 2) = 1
    pods = running(2)
    result = sync(2, pods, pods_metric({"p0": 4.0, "p1": None}, 4.0))
    assert result.metrics[0].ratio == 0.5
    assert result.desired_replicas == 1
