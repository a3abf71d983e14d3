"""The Kubernetes HPA algorithm, as counterfactual and as a policy.

Follows the `autoscaling/v2` HorizontalPodAutoscaler controller of
Kubernetes 1.30 with `behavior` set (pkg/controller/podautoscaler:
replica_calculator.go and horizontal.go), for `Pods` metrics and
`External` metrics with an `AverageValue` target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["pods", "external"]

# Slack for the tolerance band, so that a ratio of exactly 0.9 or 1.1
# computed in floats stays inside it.
_BAND_SLACK = 1e-12


@dataclass(frozen=True)
class HpaBehavior:
    """Tolerance, stabilisation windows and rate limits of one HPA."""

    tolerance: float = 0.1
    scale_down_stabilization_s: float = 300.0
    scale_up_stabilization_s: float = 0.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_down_percent: float = 100.0
    period_s: float = 15.0

    def __post_init__(self) -> None:
        for name in (
            "tolerance",
            "scale_down_stabilization_s",
            "scale_up_stabilization_s",
            "scale_up_percent",
            "scale_down_percent",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
        if self.scale_up_pods < 0:
            raise ValueError(f"scale_up_pods: must be >= 0, got {self.scale_up_pods}")
        if not math.isfinite(self.period_s) or self.period_s <= 0:
            raise ValueError(f"period_s: must be finite and > 0, got {self.period_s!r}")


@dataclass(frozen=True)
class HpaPod:
    """A pod matched by the HPA's selector, with its Kubernetes pod phase."""

    name: str
    phase: str = "Running"
    ready: bool = True
    terminating: bool = False


@dataclass(frozen=True)
class HpaMetric:
    """One metric of the HPA with its current reading.

    For `pods`, `pod_values` maps pod name to value, `None` meaning no
    sample. For `external`, `value` is the metric's total. `valid=False`
    marks a query that failed.
    """

    name: str
    type: MetricType
    target_average_value: float
    pod_values: Mapping[str, float | None] | None = None
    value: float | None = None
    valid: bool = True


@dataclass(frozen=True)
class HpaInput:
    """State of one scale target at one HPA sync.

    `recommendations` is the history returned by the previous call, as
    `(time in s, replicas)` pairs.
    """

    current_replicas: int
    min_replicas: int
    max_replicas: int
    pods: tuple[HpaPod, ...]
    metrics: tuple[HpaMetric, ...]
    now_s: float
    recommendations: tuple[tuple[float, int], ...] = ()
    behavior: HpaBehavior = field(default_factory=HpaBehavior)

    def __post_init__(self) -> None:
        for name in ("current_replicas", "min_replicas", "max_replicas"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                "min_replicas: must not be above max_replicas "
                f"({self.min_replicas} > {self.max_replicas})"
            )
        if not math.isfinite(self.now_s):
            raise ValueError(f"now_s: must be finite, got {self.now_s!r}")


@dataclass(frozen=True)
class HpaMetricResult:
    """One metric's reading: average per pod, ratio to target and proposal.

    All three are `None` for an invalid metric.
    """

    name: str
    average: float | None
    ratio: float | None
    proposal: int | None
    reason: str


@dataclass(frozen=True)
class HpaResult:
    """Outcome of one HPA sync.

    `desired_replicas` is `None` only when no metric is usable: the count
    is unknown, never 0. `recommendations` is the history to pass into the
    next call.
    """

    desired_replicas: int | None
    reasons: tuple[str, ...]
    recommendations: tuple[tuple[float, int], ...]
    bound_by: str
    metrics: tuple[HpaMetricResult, ...] = ()


def _to_milli(value: float) -> int:
    # resource.Quantity.MilliValue rounds up. The rounding to 6 places
    # first keeps 1.1 (1100.0000000000002 after scaling) at 1100m.
    return math.ceil(round(value * 1000.0, 6))


def _div_trunc(numerator: int, denominator: int) -> int:
    """Divide like Go's int64 division, which truncates toward zero."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def _in_band(ratio: float, tolerance: float) -> bool:
    return abs(ratio - 1.0) <= tolerance + _BAND_SLACK


def _average_milli(values: Mapping[str, int]) -> int:
    return _div_trunc(sum(values.values()), len(values))


def _invalid(metric: HpaMetric) -> HpaMetricResult:
    return HpaMetricResult(
        metric.name, None, None, None, f"invalid_metric:{metric.name}"
    )


def _target_milli(metric: HpaMetric) -> int | None:
    target = metric.target_average_value
    if not math.isfinite(target) or target <= 0:
        return None
    return max(1, _to_milli(target))


def _group_pods(
    metric: HpaMetric, pods: Sequence[HpaPod]
) -> tuple[dict[str, int], list[str], list[str]]:
    """Split pods into samples (milli-units), pending pods and pods without a sample.

    Terminating and Failed pods are left out. Readiness is ignored: it
    matters for CPU only.
    """
    samples: dict[str, int] = {}
    pending: list[str] = []
    missing: list[str] = []
    values = metric.pod_values or {}
    for pod in pods:
        if pod.terminating or pod.phase == "Failed":
            continue
        if pod.phase == "Pending":
            pending.append(pod.name)
            continue
        raw = values.get(pod.name)
        if raw is None or not math.isfinite(raw):
            missing.append(pod.name)
            continue
        samples[pod.name] = _to_milli(raw)
    return samples, pending, missing


def _pods_metric(
    metric: HpaMetric, pods: Sequence[HpaPod], current: int, tolerance: float
) -> HpaMetricResult:
    target = _target_milli(metric)
    if not metric.valid or target is None:
        return _invalid(metric)
    samples, pending, missing = _group_pods(metric, pods)
    if not samples:
        return _invalid(metric)
    usage = _average_milli(samples)
    ratio = usage / target
    average = usage / 1000.0
    ready_count = len(samples)
    scale_up_with_pending = bool(pending) and ratio > 1.0

    if not scale_up_with_pending and not missing:
        if _in_band(ratio, tolerance):
            return HpaMetricResult(
                metric.name, average, ratio, current, f"within_tolerance:{metric.name}"
            )
        proposal = math.ceil(ratio * ready_count)
        return HpaMetricResult(
            metric.name, average, ratio, proposal, f"proposal:{metric.name}={proposal}"
        )

    # Pods without a sample count as the target on a scale-down and as 0 on
    # a scale-up. Pending pods count as 0 on a scale-up and are left out
    # otherwise.
    corrected = dict(samples)
    missing_value = target if ratio < 1.0 else 0
    for name in missing:
        corrected[name] = missing_value
    if scale_up_with_pending:
        for name in pending:
            corrected[name] = 0
    new_ratio = _average_milli(corrected) / target

    if _in_band(new_ratio, tolerance):
        reason = f"within_tolerance:{metric.name}"
        return HpaMetricResult(metric.name, average, new_ratio, current, reason)
    if (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        reason = f"direction_flipped:{metric.name}"
        return HpaMetricResult(metric.name, average, new_ratio, current, reason)
    proposal = math.ceil(new_ratio * len(corrected))
    if (new_ratio < 1.0 and proposal > current) or (
        new_ratio > 1.0 and proposal < current
    ):
        reason = f"direction_flipped:{metric.name}"
        return HpaMetricResult(metric.name, average, new_ratio, current, reason)
    return HpaMetricResult(
        metric.name, average, new_ratio, proposal, f"proposal:{metric.name}={proposal}"
    )


def _external_metric(
    metric: HpaMetric, current: int, tolerance: float
) -> HpaMetricResult:
    target = _target_milli(metric)
    value = metric.value
    if not metric.valid or target is None or value is None or not math.isfinite(value):
        return _invalid(metric)
    usage = _to_milli(value)
    if current == 0:
        # Only reachable with min_replicas 0. Go divides by zero to +Inf
        # (or NaN for 0/0), which this branch reproduces without non-finite
        # values.
        proposal = math.ceil(usage / target) if usage > 0 else 0
        reason = f"proposal:{metric.name}={proposal}"
        return HpaMetricResult(metric.name, None, None, proposal, reason)
    ratio = usage / (target * current)
    average = usage / current / 1000.0
    if _in_band(ratio, tolerance):
        return HpaMetricResult(
            metric.name, average, ratio, current, f"within_tolerance:{metric.name}"
        )
    proposal = math.ceil(usage / target)
    return HpaMetricResult(
        metric.name, average, ratio, proposal, f"proposal:{metric.name}={proposal}"
    )


def evaluate_metric(
    metric: HpaMetric, pods: Sequence[HpaPod], current: int, tolerance: float
) -> HpaMetricResult:
    """Compute one metric's replica proposal, before stabilisation and limits."""
    if metric.type == "pods":
        return _pods_metric(metric, pods, current, tolerance)
    if metric.type == "external":
        return _external_metric(metric, current, tolerance)
    return _invalid(metric)


def _stabilize(
    inp: HpaInput, history: list[tuple[float, int]], proposal: int
) -> tuple[int, tuple[tuple[float, int], ...]]:
    """Apply the stabilisation windows and record the proposal.

    A recommendation counts when it was made strictly after the cutoff.
    """
    behavior = inp.behavior
    up_cutoff = inp.now_s - behavior.scale_up_stabilization_s
    down_cutoff = inp.now_s - behavior.scale_down_stabilization_s
    up_limit = proposal
    down_limit = proposal
    for at_s, replicas in history:
        if at_s > up_cutoff:
            up_limit = min(up_limit, replicas)
        if at_s > down_cutoff:
            down_limit = max(down_limit, replicas)
    stabilized = min(max(inp.current_replicas, up_limit), down_limit)

    # A recommendation at or before both cutoffs can never count again.
    oldest_useful = min(up_cutoff, down_cutoff)
    kept = [(at_s, r) for at_s, r in history if at_s > oldest_useful]
    kept.append((inp.now_s, proposal))
    kept.sort(key=lambda item: item[0])
    return stabilized, tuple(kept)


def _limit_rate(inp: HpaInput, desired: int) -> tuple[int, str, str]:
    """Apply the per-period rate limits and min/max.

    Returns the replicas, the reason code and the bound, both "" when nothing
    limited the count.
    """
    behavior = inp.behavior
    current = inp.current_replicas
    # NOTE: the limits start from the current count, as if nothing was
    # scaled in the last period. That is exact only for syncs at least
    # period_s apart.
    if desired > current:
        by_percent = math.ceil(current * (1.0 + behavior.scale_up_percent / 100.0))
        up_limit = max(by_percent, current + behavior.scale_up_pods, current)
        if inp.max_replicas > up_limit:
            allowed, reason, bound = up_limit, "scale_up_limit", "scale_up_limit"
        else:
            allowed, reason, bound = inp.max_replicas, "capped_by_max", "max_replicas"
        if desired > allowed:
            return allowed, reason, bound
    elif desired < current:
        # Go converts float64 to int32 by truncation.
        down_limit = int(current * (1.0 - behavior.scale_down_percent / 100.0))
        down_limit = min(down_limit, current)
        if inp.min_replicas < down_limit:
            allowed, reason, bound = down_limit, "scale_down_limit", "scale_down_limit"
        else:
            allowed, reason, bound = inp.min_replicas, "raised_to_min", "min_replicas"
        if desired < allowed:
            return allowed, reason, bound
    return desired, "", ""


def _clean_history(inp: HpaInput) -> list[tuple[float, int]]:
    history = [
        (float(at_s), int(replicas))
        for at_s, replicas in inp.recommendations
        if math.isfinite(at_s)
    ]
    if not history:
        # The HPA records the current count as its first recommendation.
        history = [(inp.now_s, inp.current_replicas)]
    return history


def hpa_desired_replicas(inp: HpaInput) -> HpaResult:
    """Compute the replica count an HPA with `behavior` set would choose."""
    history = _clean_history(inp)
    current = inp.current_replicas
    if current == 0 and inp.min_replicas != 0:
        return HpaResult(0, ("scaling_disabled",), tuple(history), "")
    if current > inp.max_replicas:
        return HpaResult(
            inp.max_replicas, ("capped_by_max",), tuple(history), "max_replicas"
        )
    if current < inp.min_replicas:
        return HpaResult(
            inp.min_replicas, ("raised_to_min",), tuple(history), "min_replicas"
        )

    tolerance = inp.behavior.tolerance
    results = tuple(
        evaluate_metric(metric, inp.pods, current, tolerance) for metric in inp.metrics
    )
    reasons = [result.reason for result in results]
    proposals = [result.proposal for result in results if result.proposal is not None]
    invalid = [result.name for result in results if result.proposal is None]
    if not proposals:
        reasons.append("no_metrics" if not results else "no_valid_metric")
        return HpaResult(None, tuple(reasons), tuple(history), "missing_data", results)

    proposal = max(proposals)
    if invalid and proposal < current:
        # A scale-down needs every metric: with one invalid, the count stays.
        reasons.append("hold:invalid_metric_on_scale_down")
        return HpaResult(
            current, tuple(reasons), tuple(history), "invalid_metric", results
        )

    stabilized, recommendations = _stabilize(inp, history, proposal)
    bound_by = ""
    if stabilized != proposal:
        reasons.append("stabilized")
        bound_by = "stabilization"
    desired, limit_reason, limit_bound = _limit_rate(inp, stabilized)
    if limit_reason:
        reasons.append(limit_reason)
        bound_by = limit_bound
    if desired == current:
        reasons.append("no_change")
    return HpaResult(desired, tuple(reasons), recommendations, bound_by, results)
