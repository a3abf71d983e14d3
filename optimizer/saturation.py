"""The paper-era WVA saturation policy `wva-v1`.

Scales one model by the KV-cache usage and waiting queue of its replicas.
It adds one replica to the cheapest variant when the average spare capacity
is short, and removes one from the most expensive variant when the others
can absorb its load. It decides nothing while an earlier change is on its
way or a replica is not reporting. `optimizer/README.md` lists the rules
and reason codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Slack for threshold and trigger comparisons, so that float rounding
# (0.8 - 0.7 is 0.10000000000000009) does not move a value across a line.
EPSILON = 1e-9


def _check_finite(name: str, value: float, minimum: float, strict: bool) -> None:
    below = value <= minimum if strict else value < minimum
    if not math.isfinite(value) or below:
        relation = ">" if strict else ">="
        raise ValueError(
            f"{name}: must be finite and {relation} {minimum:g}, got {value!r}"
        )


@dataclass(frozen=True)
class SaturationConfig:
    """Thresholds and triggers of `wva-v1`, with KV values as fractions (0.8 is 80%)."""

    kv_cache_threshold: float = 0.8
    queue_length_threshold: float = 5.0
    kv_spare_trigger: float = 0.1
    queue_spare_trigger: float = 3.0
    max_sample_age_s: float = 60.0

    def __post_init__(self) -> None:
        _check_finite("kv_cache_threshold", self.kv_cache_threshold, 0.0, strict=True)
        if self.kv_cache_threshold > 1.0:
            raise ValueError(
                "kv_cache_threshold: must be at most 1, "
                f"got {self.kv_cache_threshold!r}"
                " (use 0.8 for 80%)"
            )
        _check_finite(
            "queue_length_threshold", self.queue_length_threshold, 0.0, strict=True
        )
        _check_finite("kv_spare_trigger", self.kv_spare_trigger, 0.0, strict=False)
        _check_finite(
            "queue_spare_trigger", self.queue_spare_trigger, 0.0, strict=False
        )
        _check_finite("max_sample_age_s", self.max_sample_age_s, 0.0, strict=False)


@dataclass(frozen=True)
class ReplicaSample:
    """One replica's one-minute peaks, where `None` means no sample, never 0.

    `phase` is the Kubernetes pod phase and `age_s` the age of the sample
    in seconds, when known. `scheduled` tells whether the pod has a node:
    a Pending pod with a node is pulling its image or starting, one
    without waits for a GPU. None when not known.
    """

    pod: str
    kv_cache_usage: float | None
    num_requests_waiting: float | None
    num_requests_running: float | None = None
    phase: str = "Running"
    ready: bool = True
    terminating: bool = False
    age_s: float | None = None
    scheduled: bool | None = None


@dataclass(frozen=True)
class VariantInput:
    """One variant of the model: its price, replica counts, bounds and samples.

    `current_replicas` is `spec.replicas`. `desired_replicas` is the target
    of the last decision, when known.
    """

    name: str
    usd_per_replica_hour: float
    current_replicas: int
    ready_replicas: int
    min_replicas: int
    max_replicas: int
    replicas: tuple[ReplicaSample, ...]
    pending_replicas: int = 0
    desired_replicas: int | None = None

    def __post_init__(self) -> None:
        _check_finite("usd_per_replica_hour", self.usd_per_replica_hour, 0.0, False)
        for name in (
            "current_replicas",
            "ready_replicas",
            "min_replicas",
            "max_replicas",
            "pending_replicas",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                "min_replicas: must not be above max_replicas "
                f"({self.min_replicas} > {self.max_replicas})"
            )


@dataclass(frozen=True)
class ScaleDownCheck:
    """Load of the N non-saturated replicas spread over N - 1, and the spares left."""

    non_saturated: int
    kv_after: float
    queue_after: float
    spare_kv_after: float
    spare_queue_after: float
    safe: bool


@dataclass(frozen=True)
class VariantDecision:
    """Target replicas of one variant with its reason codes.

    `victim_pod` names the replica to remove on a reduction. `message` is a
    short sentence for the page, such as "wants 5, capped at 4 (max)".
    """

    variant: str
    current_replicas: int
    target_replicas: int
    reasons: tuple[str, ...]
    bound_by: str
    victim_pod: str | None = None
    message: str = ""


@dataclass(frozen=True)
class ModelAnalysis:
    """Decisions for every variant of one model, and the analysis behind them.

    `spare_kv` and `spare_queue` average over non-saturated reporting
    replicas. They are 0 when every reporting replica is saturated and
    `None` when no replica reports.
    """

    decisions: tuple[VariantDecision, ...]
    spare_kv: float | None
    spare_queue: float | None
    saturated: tuple[str, ...]
    not_reporting: tuple[str, ...]
    pending: tuple[str, ...]
    scale_down_check: ScaleDownCheck | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class _Replicas:
    """Replicas of the model sorted by role, in input order."""

    reporting: tuple[ReplicaSample, ...]
    not_reporting: tuple[str, ...]
    pending_pods: tuple[str, ...]
    gate_reasons: tuple[str, ...]
    missing_data: bool
    transition: bool


def is_reporting(sample: ReplicaSample, config: SaturationConfig) -> bool:
    """Tell whether a sample is usable: present, finite, in range and fresh."""
    kv = sample.kv_cache_usage
    waiting = sample.num_requests_waiting
    if kv is None or waiting is None:
        return False
    if not (math.isfinite(kv) and math.isfinite(waiting)):
        return False
    if kv < 0.0 or kv > 1.0 or waiting < 0.0:
        return False
    if sample.age_s is not None and not sample.age_s <= config.max_sample_age_s:
        return False
    return True


def is_saturated(sample: ReplicaSample, config: SaturationConfig) -> bool:
    """Tell whether a reporting replica is past its KV or queue threshold."""
    kv = sample.kv_cache_usage
    waiting = sample.num_requests_waiting
    if kv is None or waiting is None:
        return False
    return (
        kv >= config.kv_cache_threshold - EPSILON
        or waiting >= config.queue_length_threshold - EPSILON
    )


def _sort_replicas(
    variants: Sequence[VariantInput], config: SaturationConfig
) -> _Replicas:
    reporting: list[ReplicaSample] = []
    not_reporting: list[str] = []
    pending_pods: list[str] = []
    missing_reasons: list[str] = []
    pending_reasons: list[str] = []
    transition = False
    for variant in variants:
        live = [s for s in variant.replicas if not s.terminating]
        pending_here = [s.pod for s in live if s.phase == "Pending"]
        pending_pods.extend(pending_here)
        listed_ready = 0
        for sample in live:
            if sample.phase == "Pending":
                continue
            listed_ready += int(sample.ready)
            if is_reporting(sample, config):
                reporting.append(sample)
            else:
                not_reporting.append(sample.pod)
        unlisted = variant.ready_replicas - listed_ready
        if unlisted > 0:
            missing_reasons.append(f"missing_samples:{variant.name}={unlisted}")
        unnamed_pending = variant.pending_replicas - len(pending_here)
        if unnamed_pending > 0:
            pending_reasons.append(f"pending:{variant.name}={unnamed_pending}")
        unrealised = (
            variant.desired_replicas is not None
            and variant.desired_replicas != variant.current_replicas
        )
        if unrealised or pending_here or unnamed_pending > 0:
            transition = True

    reasons: list[str] = []
    if not_reporting:
        reasons.append("missing_metrics:" + ",".join(not_reporting))
    reasons.extend(missing_reasons)
    if transition:
        reasons.append("transition_pending")
        if pending_pods:
            reasons.append("pending:" + ",".join(pending_pods))
        reasons.extend(pending_reasons)
    return _Replicas(
        reporting=tuple(reporting),
        not_reporting=tuple(not_reporting),
        pending_pods=tuple(pending_pods),
        gate_reasons=tuple(reasons),
        missing_data=bool(not_reporting or missing_reasons),
        transition=transition,
    )


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def check_scale_down(
    non_saturated: Sequence[ReplicaSample], config: SaturationConfig
) -> ScaleDownCheck:
    """Spread the load of N replicas over N - 1 and compare the spares left.

    Raises ValueError for fewer than 2 replicas.
    """
    count = len(non_saturated)
    if count < 2:
        raise ValueError(f"non_saturated: needs at least 2 replicas, got {count}")
    kv_after = math.fsum(s.kv_cache_usage or 0.0 for s in non_saturated) / (count - 1)
    queue_after = math.fsum(s.num_requests_waiting or 0.0 for s in non_saturated) / (
        count - 1
    )
    spare_kv_after = config.kv_cache_threshold - kv_after
    spare_queue_after = config.queue_length_threshold - queue_after
    safe = (
        spare_kv_after >= config.kv_spare_trigger - EPSILON
        and spare_queue_after >= config.queue_spare_trigger - EPSILON
    )
    return ScaleDownCheck(
        count, kv_after, queue_after, spare_kv_after, spare_queue_after, safe
    )


def _clamp(
    variant: VariantInput, requested: int
) -> tuple[int, tuple[str, ...], str, str]:
    """Clamp a requested count to the variant's bounds.

    Returns the target, the reason codes, the bound and the page message.
    """
    if requested > variant.max_replicas:
        message = f"wants {requested}, capped at {variant.max_replicas} (max)"
        return variant.max_replicas, ("capped_by_max",), "max_replicas", message
    if requested < variant.min_replicas:
        code = (
            "capped_by_min" if requested < variant.current_replicas else "raised_to_min"
        )
        verb = "capped at" if code == "capped_by_min" else "raised to"
        message = f"wants {requested}, {verb} {variant.min_replicas} (min)"
        return variant.min_replicas, (code,), "min_replicas", message
    return requested, (), "", ""


def choose_victim(variant: VariantInput) -> str | None:
    """Pick the ready replica with the fewest in-flight tokens.

    Order: lowest KV-cache usage, then fewest running requests (unknown
    last), then pod name.
    """
    candidates = [
        s
        for s in variant.replicas
        if not s.terminating and s.ready and s.phase == "Running"
    ]
    if not candidates:
        return None

    def key(sample: ReplicaSample) -> tuple[float, float, str]:
        kv = sample.kv_cache_usage
        running = sample.num_requests_running
        kv_key = kv if kv is not None and math.isfinite(kv) else math.inf
        run_key = (
            running if running is not None and math.isfinite(running) else math.inf
        )
        return kv_key, run_key, sample.pod

    return min(candidates, key=key).pod


def _hold(
    variant: VariantInput, reasons: tuple[str, ...], bound_by: str
) -> VariantDecision:
    return VariantDecision(
        variant.name,
        variant.current_replicas,
        variant.current_replicas,
        reasons,
        bound_by,
    )


def _unchanged(variant: VariantInput, reasons: tuple[str, ...]) -> VariantDecision:
    """Keep the count, but bring it into min..max when it lies outside."""
    target, clamp_reasons, bound_by, message = _clamp(variant, variant.current_replicas)
    if clamp_reasons:
        reasons = clamp_reasons
    return VariantDecision(
        variant.name, variant.current_replicas, target, reasons, bound_by, None, message
    )


def _changed(
    variant: VariantInput, delta: int, reasons: tuple[str, ...]
) -> VariantDecision:
    target, clamp_reasons, bound_by, message = _clamp(
        variant, variant.current_replicas + delta
    )
    all_reasons = reasons + clamp_reasons
    if target == variant.current_replicas:
        all_reasons += ("no_change",)
    victim = choose_victim(variant) if target < variant.current_replicas else None
    return VariantDecision(
        variant.name,
        variant.current_replicas,
        target,
        all_reasons,
        bound_by,
        victim,
        message,
    )


def _scale_up_target(variants: Sequence[VariantInput]) -> VariantInput | None:
    """Pick the cheapest variant with replicas, nothing pending and room below max.

    When every such variant is at its max, the cheapest of them is returned
    so that its decision reports the cap.
    """
    eligible = [
        v
        for v in variants
        if v.current_replicas > 0
        and v.pending_replicas == 0
        and not any(s.phase == "Pending" and not s.terminating for s in v.replicas)
    ]
    with_room = [v for v in eligible if v.current_replicas < v.max_replicas]
    pool = with_room or eligible
    if not pool:
        return None
    return min(pool, key=lambda v: (v.usd_per_replica_hour, v.name))


def _scale_down_target(variants: Sequence[VariantInput]) -> VariantInput | None:
    """Pick the most expensive variant above 1 replica, preferring room above min."""
    above_one = [v for v in variants if v.current_replicas > 1]
    with_room = [v for v in above_one if v.current_replicas > v.min_replicas]
    pool = with_room or above_one
    if not pool:
        return None
    return min(pool, key=lambda v: (-v.usd_per_replica_hour, v.name))


def _decide(
    variants: Sequence[VariantInput],
    chosen: VariantInput | None,
    delta: int,
    chosen_reasons: tuple[str, ...],
    other_reasons: tuple[str, ...],
) -> tuple[VariantDecision, ...]:
    decisions: list[VariantDecision] = []
    for variant in variants:
        if chosen is not None and variant.name == chosen.name:
            decisions.append(_changed(variant, delta, chosen_reasons))
        else:
            decisions.append(_unchanged(variant, other_reasons))
    return tuple(decisions)


def analyse_model(
    variants: Sequence[VariantInput], config: SaturationConfig | None = None
) -> ModelAnalysis:
    """Decide `wva-v1` targets for every variant of one model."""
    config = config or SaturationConfig()
    replicas = _sort_replicas(variants, config)
    samples = replicas.reporting
    saturated = tuple(s.pod for s in samples if is_saturated(s, config))
    non_saturated = [s for s in samples if not is_saturated(s, config)]

    spare_kv: float | None = None
    spare_queue: float | None = None
    if non_saturated:
        spare_kv = config.kv_cache_threshold - _mean(
            [s.kv_cache_usage or 0.0 for s in non_saturated]
        )
        spare_queue = config.queue_length_threshold - _mean(
            [s.num_requests_waiting or 0.0 for s in non_saturated]
        )
    elif samples:
        spare_kv, spare_queue = 0.0, 0.0

    model_reasons: list[str] = []
    if saturated:
        model_reasons.append("saturated:" + ",".join(saturated))

    def result(
        decisions: tuple[VariantDecision, ...],
        reasons: Sequence[str],
        check: ScaleDownCheck | None = None,
    ) -> ModelAnalysis:
        return ModelAnalysis(
            decisions=decisions,
            spare_kv=spare_kv,
            spare_queue=spare_queue,
            saturated=saturated,
            not_reporting=replicas.not_reporting,
            pending=replicas.pending_pods,
            scale_down_check=check,
            reasons=tuple(reasons),
        )

    # Transition gate: no decision while data is missing or a change is on its way.
    if replicas.missing_data or replicas.transition:
        bound_by = "missing_data" if replicas.missing_data else "transition"
        gate = replicas.gate_reasons
        decisions = tuple(_hold(v, gate, bound_by) for v in variants)
        return result(decisions, [*model_reasons, *gate])

    if spare_kv is None or spare_queue is None:
        decisions = _decide(variants, None, 0, (), ("no_change", "no_replicas"))
        return result(decisions, [*model_reasons, "no_replicas"])

    up_reasons: list[str] = []
    if spare_kv < config.kv_spare_trigger - EPSILON:
        up_reasons.append("scale_up:spare_kv")
    if spare_queue < config.queue_spare_trigger - EPSILON:
        up_reasons.append("scale_up:spare_queue")
    if up_reasons:
        chosen = _scale_up_target(variants)
        reasons = (*up_reasons, *model_reasons)
        if chosen is None:
            reasons = ("no_change", *reasons, "no_candidate")
            return result(_decide(variants, None, 0, (), reasons), reasons)
        decisions = _decide(variants, chosen, +1, reasons, ("no_change",))
        return result(decisions, reasons)

    if len(non_saturated) < 2:
        reasons = ("no_change", "scale_down:too_few_non_saturated", *model_reasons)
        return result(_decide(variants, None, 0, (), reasons), reasons)

    check = check_scale_down(non_saturated, config)
    if not check.safe:
        reasons = ("no_change", "scale_down:unsafe", *model_reasons)
        return result(_decide(variants, None, 0, (), reasons), reasons, check)

    chosen = _scale_down_target(variants)
    reasons = ("scale_down:safe", *model_reasons)
    if chosen is None:
        reasons = ("no_change", *reasons, "no_candidate")
        return result(_decide(variants, None, 0, (), reasons), reasons, check)
    decisions = _decide(variants, chosen, -1, reasons, ("no_change",))
    return result(decisions, reasons, check)
