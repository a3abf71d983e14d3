"""Replica signals for the `wva` policy: what is known, missing and on its way.

Each replica is sorted by what its samples show. A sample that is missing,
stale, not finite or out of range marks the replica and its variant as
degraded, and it is never read as 0. A replica is saturated when any valid
signal is past its threshold, so a scale-up that the valid data justifies
can go ahead while another signal is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from optimizer.saturation import EPSILON, ReplicaSample, SaturationConfig
from optimizer.state import VariantState

SIGNALS = ("kv_cache_usage", "num_requests_waiting")


def _signal_problem(name: str, value: float | None) -> str | None:
    """Return `missing_signal`, `non_finite` or `out_of_range`, or None if valid."""
    if value is None:
        return "missing_signal"
    if not math.isfinite(value):
        return "non_finite"
    if value < 0 or (name == "kv_cache_usage" and value > 1.0):
        return "out_of_range"
    return None


@dataclass(frozen=True)
class ReplicaView:
    """One live replica with its usable signals (`None` where unusable)."""

    sample: ReplicaSample
    kv: float | None
    waiting: float | None
    running: float | None
    problems: tuple[str, ...]
    stale: bool

    @property
    def pod(self) -> str:
        return self.sample.pod

    @property
    def complete(self) -> bool:
        return self.kv is not None and self.waiting is not None


def view_replica(sample: ReplicaSample, config: SaturationConfig) -> ReplicaView:
    """Check a sample's signals and age, keeping only usable values."""
    stale = sample.age_s is not None and not sample.age_s <= config.max_sample_age_s
    problems: list[str] = []
    values: dict[str, float | None] = {}
    for name in SIGNALS:
        value = getattr(sample, name)
        problem = _signal_problem(name, value)
        if problem is not None:
            problems.append(f"{problem}:{name}")
        values[name] = None if problem is not None or stale else value
    running = sample.num_requests_running
    usable_running = (
        running
        if running is not None and math.isfinite(running) and running >= 0
        else None
    )
    return ReplicaView(
        sample=sample,
        kv=values["kv_cache_usage"],
        waiting=values["num_requests_waiting"],
        running=None if stale else usable_running,
        problems=tuple(problems),
        stale=stale,
    )


def is_saturated_view(view: ReplicaView, config: SaturationConfig) -> bool:
    """Tell whether any usable signal is at or past its threshold."""
    kv_full = view.kv is not None and view.kv >= config.kv_cache_threshold - EPSILON
    queue_full = (
        view.waiting is not None
        and view.waiting >= config.queue_length_threshold - EPSILON
    )
    return kv_full or queue_full


@dataclass(frozen=True)
class VariantSignals:
    """A variant's replicas sorted by role.

    `on_the_way` counts pending and starting replicas plus an unrealised
    increase (`desired_replicas` above `current_replicas`). `stuck` lists
    pods pending for longer than the timeout: they count as nothing.
    """

    variant: VariantState
    ready: tuple[ReplicaView, ...]
    missing: tuple[str, ...]
    unlisted: int
    pending: tuple[str, ...]
    on_the_way: int
    stuck: tuple[str, ...]
    saturated: tuple[str, ...]
    non_saturated: tuple[ReplicaView, ...]
    problems: tuple[str, ...]

    @property
    def degraded(self) -> bool:
        return bool(self.missing) or self.unlisted > 0

    @property
    def has_pending(self) -> bool:
        return self.on_the_way > 0


def _pending_pods(
    variant: VariantState, live: Sequence[ReplicaSample], timeout_s: float
) -> tuple[list[str], list[str]]:
    pending: list[str] = []
    stuck: list[str] = []
    for sample in live:
        if sample.phase == "Pending":
            waited = variant.pending_s.get(sample.pod)
            if waited is not None and waited > timeout_s:
                stuck.append(sample.pod)
            else:
                pending.append(sample.pod)
        elif not sample.ready:
            pending.append(sample.pod)
    return pending, stuck


def variant_signals(
    variant: VariantState, config: SaturationConfig, pending_timeout_s: float
) -> VariantSignals:
    """Sort one variant's replicas; terminating replicas are left out."""
    live = [
        s for s in variant.replicas if not s.terminating and s.phase != "Terminating"
    ]
    pending, stuck = _pending_pods(variant, live, pending_timeout_s)

    ready = tuple(
        view_replica(s, config) for s in live if s.phase == "Running" and s.ready
    )
    missing = tuple(v.pod for v in ready if not v.complete)
    problems: list[str] = []
    for view in ready:
        for problem in view.problems:
            if problem not in problems:
                problems.append(problem)
    stale = [v.pod for v in ready if v.stale]
    if stale:
        problems.append("stale_metrics:" + ",".join(stale))

    saturated = tuple(v.pod for v in ready if is_saturated_view(v, config))
    non_saturated = tuple(
        v for v in ready if v.complete and not is_saturated_view(v, config)
    )

    unrealised = 0
    if variant.desired_replicas is not None:
        unrealised = max(0, variant.desired_replicas - variant.current_replicas)
    unnamed = max(0, variant.pending_replicas - len(pending) - len(stuck))
    return VariantSignals(
        variant=variant,
        ready=ready,
        missing=missing,
        unlisted=max(0, variant.ready_replicas - len(ready)),
        pending=tuple(pending),
        on_the_way=len(pending) + max(unnamed, unrealised),
        stuck=tuple(stuck),
        saturated=saturated,
        non_saturated=non_saturated,
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class ModelSpares:
    """Average spare KV and queue over non-saturated replicas of a model.

    Both are 0 when every replica with data is saturated, and `None` when no
    replica has usable data at all.
    """

    spare_kv: float | None
    spare_queue: float | None
    up_reasons: tuple[str, ...]


def model_spares(
    signals: Sequence[VariantSignals], config: SaturationConfig
) -> ModelSpares:
    """Average the spares of a model and name the triggers that fire."""
    non_saturated = [v for s in signals for v in s.non_saturated]
    saturated = [p for s in signals for p in s.saturated]
    if non_saturated:
        count = len(non_saturated)
        spare_kv = (
            config.kv_cache_threshold
            - math.fsum(v.kv or 0.0 for v in non_saturated) / count
        )
        spare_queue = (
            config.queue_length_threshold
            - math.fsum(v.waiting or 0.0 for v in non_saturated) / count
        )
    elif saturated:
        spare_kv, spare_queue = 0.0, 0.0
    else:
        return ModelSpares(None, None, ())
    reasons: list[str] = []
    if spare_kv < config.kv_spare_trigger - EPSILON:
        reasons.append("scale_up:spare_kv")
    if spare_queue < config.queue_spare_trigger - EPSILON:
        reasons.append("scale_up:spare_queue")
    return ModelSpares(spare_kv, spare_queue, tuple(reasons))


def in_flight_tokens(view: ReplicaView, pool: float | None) -> float:
    """Estimate the tokens a replica holds: KV usage times pool, else KV usage."""
    if view.kv is None:
        return math.inf
    return view.kv * pool if pool is not None else view.kv


def choose_victims(signals: VariantSignals, count: int) -> tuple[str, ...]:
    """Name the replicas to remove: stuck, then pending, then fewest in-flight tokens.

    Replicas with unknown KV usage come last, so a gap is never read as idle.
    """
    variant = signals.variant
    ordered: list[str] = [*signals.stuck, *signals.pending]

    def key(view: ReplicaView) -> tuple[float, float, str]:
        pool = variant.kv_pools.get(view.pod, variant.profile.kv_tokens)
        running = view.running if view.running is not None else math.inf
        return in_flight_tokens(view, pool), running, view.pod

    ordered.extend(v.pod for v in sorted(signals.ready, key=key))
    return tuple(ordered[:count])
