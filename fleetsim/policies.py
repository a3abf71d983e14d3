"""Scaling policies for `python -m fleetsim compare`.

Every policy receives the same `Observation` once per control period: the
replicas of each variant with the one-minute peaks of their scraped
metrics, the free GPUs and the demand the control cycle can measure. It
returns a target per variant. The HPA policies call `optimizer.hpa`, as
the control cycle's counterfactual does; `wva-v1` and `wva` live in
`fleetsim.policies_wva`. `static-peak` and `oracle` read the trace itself.

`drains` sets how the run applies a reduction. A draining policy names
its victims; they stop receiving requests and finish what they hold before
they are removed, as the console's pod-deletion-cost annotation and a
preStop hook do. A policy that does not drain lowers the Deployment's
count and the ReplicaSet removes the newest ready pod at once, losing its
requests, as with the Kubernetes HPA.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fleetsim.engine import EngineConfig
from fleetsim.replica import AcceleratorProfile
from fleetsim.trace import TraceRequest
from optimizer.allocation import (
    AllocationOptions,
    AllocationProblem,
    AllocationVariant,
    ModelDemand,
    solve_allocation,
)
from optimizer.hpa import HpaBehavior, HpaInput, HpaMetric, HpaPod, hpa_desired_replicas
from optimizer.power import PowerCurve
from optimizer.queueing import LatencyProfile, replica_capacity_rps

MODEL = "model"


@dataclass(frozen=True)
class ServiceClassSpec:
    name: str
    priority: int
    ttft_ms: float
    itl_ms: float


@dataclass(frozen=True)
class ReplicaView:
    """One live replica as observed by a policy; metric values are one-minute peaks.

    A value is None when the pod has no sample yet (not ready).
    """

    pod: str
    phase: str
    ready: bool
    kv_cache_usage: float | None
    num_requests_waiting: float | None
    num_requests_running: float | None
    in_flight_tokens: int
    pending_s: float
    # Whether the pod has a node; a Pending pod without one waits for a GPU.
    scheduled: bool = True


@dataclass(frozen=True)
class VariantView:
    name: str
    accelerator: str
    gpus_per_replica: int
    usd_per_gpu_hour: float
    min_replicas: int
    max_replicas: int
    spec_replicas: int
    replicas: tuple[ReplicaView, ...]
    kv_tokens: int
    engine: EngineConfig
    # Requests per second this variant completed over the last control period.
    completion_rate: float

    @property
    def usd_per_replica_hour(self) -> float:
        return self.usd_per_gpu_hour * self.gpus_per_replica

    @property
    def ready_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.ready)

    @property
    def pending_replicas(self) -> int:
        return sum(1 for r in self.replicas if not r.ready)


@dataclass(frozen=True)
class Demand:
    """Demand measured like the control cycle: from counters, not from the trace.

    `arrival_rate` is the completion rate plus the growth of waiting and
    running requests over the control period. Token lengths are averages
    over the last five minutes, None before the first completion.
    `gateway_arrival_rate` is the rate of requests the router received over
    the last minute, rejected ones included. The console reads the same
    rate from the gateway's request counter plus its capacity rejections.
    None before two samples.
    """

    arrival_rate: float
    completion_rate: float
    avg_input_tokens: float | None
    avg_output_tokens: float | None
    gateway_arrival_rate: float | None = None


@dataclass(frozen=True)
class Observation:
    now_s: float
    variants: tuple[VariantView, ...]
    free_gpus: Mapping[str, int]
    demand: Demand
    # (time s, variant, from, to) of every change applied so far.
    scale_events: tuple[tuple[float, str, int, int], ...] = ()


@dataclass(frozen=True)
class Decision:
    target: int
    # Pods to drain, most idle first; only read from draining policies.
    victims: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyContext:
    """Inputs of a policy other than its observations."""

    variants: tuple[VariantView, ...]
    profiles: Mapping[str, AcceleratorProfile]
    power: Mapping[str, PowerCurve]
    gpus: Mapping[str, int]
    sizing_class: ServiceClassSpec
    startup_delay_s: float
    control_period_s: float
    # The scaled trace: read only by `static-peak` and `oracle`.
    trace: Sequence[TraceRequest] = ()
    usd_per_kwh: float = 0.0
    hpa_targets: Mapping[str, float] = field(default_factory=dict)
    # Benchmarked requests/s of one replica per variant, within the sizing
    # class's targets (`fleetsim.policies_capacity`), and the latency
    # profiles fitted to them.
    capacities: Mapping[str, float] = field(default_factory=dict)
    fitted: Mapping[str, LatencyProfile] = field(default_factory=dict)


class Policy(Protocol):
    name: str
    drains: bool

    def initial_replicas(self) -> dict[str, int] | None: ...

    def decide(self, observation: Observation) -> dict[str, Decision]: ...


def latency_profile(
    profile: AcceleratorProfile,
    engine: EngineConfig,
    avg_input: float,
    avg_output: float,
) -> LatencyProfile:
    """Fit the queueing model's profile to the engine's iteration time.

    The engine's context term (ms per 1,000 context tokens in the batch) is
    folded into the per-sequence decode cost at the mean context of a
    decoding request, `I + O / 2`.
    """
    context_ms = profile.step_per_1k_ctx_ms * (avg_input + avg_output / 2.0) / 1000.0
    return LatencyProfile(
        alpha=profile.step_base_ms,
        beta=profile.step_per_seq_ms + context_ms,
        gamma=profile.step_base_ms,
        delta=profile.prefill_per_token_ms,
        max_batch=engine.max_num_seqs,
    )


def capacity_rps(context: PolicyContext, variant: VariantView) -> float:
    """Requests/s one replica serves within the sizing class's targets.

    The benchmarked capacity when there is one, else the queueing model at
    the engine's coefficients with the trace's mean token lengths.
    """
    if variant.name in context.capacities:
        return context.capacities[variant.name]
    lengths = [(r.prompt_tokens, r.output_tokens) for r in context.trace]
    if not lengths:
        return 0.0
    avg_input = sum(i for i, _ in lengths) / len(lengths)
    avg_output = sum(o for _, o in lengths) / len(lengths)
    profile = context.profiles[variant.accelerator]
    model = latency_profile(profile, variant.engine, avg_input, avg_output)
    return replica_capacity_rps(
        model,
        avg_input,
        avg_output,
        context.sizing_class.ttft_ms,
        context.sizing_class.itl_ms,
    )


# -- Kubernetes HPA --------------------------------------------------------


HPA_METRICS = {"hpa-kv": "kv_cache_usage", "hpa-queue": "num_requests_waiting"}
DEFAULT_HPA_TARGETS = {"hpa-kv": 0.6, "hpa-queue": 4.0}
# Shortest window of `peak_rate` cut at the end of a trace, in seconds: one
# scrape period, so a single request does not make a peak.
MIN_PEAK_WINDOW_S = 15.0


class HpaPolicy:
    """One Kubernetes HPA per variant on one per-pod metric, synced every period.

    The HPA requires `minReplicas >= 1` unless the alpha HPAScaleToZero
    feature gate is on, so a variant's minimum is raised to 1.
    """

    drains = False

    def __init__(self, name: str, context: PolicyContext) -> None:
        self.name = name
        self.metric = HPA_METRICS[name]
        self.target = float(context.hpa_targets.get(name, DEFAULT_HPA_TARGETS[name]))
        if not (math.isfinite(self.target) and self.target > 0):
            raise ValueError(f"{name} target must be > 0, got {self.target}")
        self.history: dict[str, tuple[tuple[float, int], ...]] = {}

    def initial_replicas(self) -> dict[str, int] | None:
        return None

    def decide(self, observation: Observation) -> dict[str, Decision]:
        decisions = {}
        for variant in observation.variants:
            values: dict[str, float | None] = {
                r.pod: getattr(r, self.metric) if r.ready else None
                for r in variant.replicas
            }
            result = hpa_desired_replicas(
                HpaInput(
                    current_replicas=variant.spec_replicas,
                    min_replicas=max(1, variant.min_replicas),
                    max_replicas=variant.max_replicas,
                    pods=tuple(
                        HpaPod(r.pod, r.phase, r.ready) for r in variant.replicas
                    ),
                    metrics=(
                        HpaMetric(self.metric, "pods", self.target, pod_values=values),
                    ),
                    now_s=observation.now_s,
                    recommendations=self.history.get(variant.name, ()),
                    behavior=HpaBehavior(),
                )
            )
            self.history[variant.name] = tuple(result.recommendations)
            target = result.desired_replicas
            if target is None:
                target = variant.spec_replicas
            decisions[variant.name] = Decision(target, (), tuple(result.reasons))
        return decisions


# -- trace-reading policies -------------------------------------------------


def peak_rate(
    requests: Sequence[TraceRequest],
    start: float,
    end: float,
    trace_end_s: float | None = None,
) -> float:
    """Highest arrival rate over any 60 s window that starts in [start, end).

    Windows start at every arrival, so the peak does not depend on where
    minute boundaries fall. With `trace_end_s`, a window that would run
    past the end of the trace is cut there, and its rate is over the part
    left (at least MIN_PEAK_WINDOW_S). Otherwise the last minute of a trace
    looks idle to a policy that reads ahead.
    """
    times = sorted(r.arrival_s for r in requests if start <= r.arrival_s < end + 60.0)
    best = 0.0
    ahead = 0
    for index, at_s in enumerate(times):
        if at_s >= end:
            break
        ahead = max(ahead, index)
        while ahead < len(times) and times[ahead] < at_s + 60.0:
            ahead += 1
        window = 60.0
        if trace_end_s is not None:
            window = min(window, max(MIN_PEAK_WINDOW_S, trace_end_s - at_s))
        best = max(best, (ahead - index) / window)
    return best


def cheapest_allocation(
    context: PolicyContext,
    rate: float,
    current: Mapping[str, int],
    change_penalty_usd: float = 0.0,
) -> dict[str, int]:
    """Cheapest replicas per variant whose capacity covers `rate` requests/s.

    Uses the MILP of `optimizer.allocation` within the fleet's GPU budgets;
    power is priced at `usd_per_kwh` at full utilisation.
    """
    variants = []
    for variant in context.variants:
        capacity = capacity_rps(context, variant)
        curve = context.power[variant.accelerator]
        variants.append(
            AllocationVariant(
                variant.name,
                MODEL,
                variant.accelerator,
                variant.gpus_per_replica,
                variant.usd_per_replica_hour,
                capacity,
                variant.min_replicas,
                variant.max_replicas,
                int(current.get(variant.name, 0)),
                watts_per_replica=curve.full_w * variant.gpus_per_replica,
            )
        )
    used = {
        accelerator: sum(
            int(current.get(v.name, 0)) * v.gpus_per_replica
            for v in context.variants
            if v.accelerator == accelerator
        )
        for accelerator in context.gpus
    }
    result = solve_allocation(
        AllocationProblem(
            variants=tuple(variants),
            demands=(ModelDemand(MODEL, required=rate, priority=1),),
            free_gpus={
                accelerator: max(0, total - used[accelerator])
                for accelerator, total in context.gpus.items()
            },
        ),
        AllocationOptions(
            usd_per_kwh=context.usd_per_kwh, change_penalty_usd=change_penalty_usd
        ),
    )
    return {name: int(n) for name, n in result.replicas.items()}


class StaticPeakPolicy:
    """A fixed fleet: the cheapest allocation covering the trace's peak minute."""

    name = "static-peak"
    drains = True

    def __init__(self, context: PolicyContext) -> None:
        self.context = context
        end = max((r.arrival_s for r in context.trace), default=0.0) + 1.0
        self.replicas = cheapest_allocation(
            context, peak_rate(context.trace, 0.0, end), {}
        )

    def initial_replicas(self) -> dict[str, int] | None:
        return dict(self.replicas)

    def decide(self, observation: Observation) -> dict[str, Decision]:
        return {
            v.name: Decision(self.replicas.get(v.name, v.spec_replicas))
            for v in observation.variants
        }


# The oracle's price of one replica added or removed, in dollars: a change
# must save more than this per hour of allocation cost to be made.
CHANGE_PENALTY_USD = 0.5


class OraclePolicy:
    """Clairvoyant reference that reads every future arrival of the trace.

    Each control period it sets the cheapest allocation covering the peak
    one-minute rate from now until one start-up delay plus one period ahead,
    so replicas it starts are ready when their load arrives. It starts with
    the allocation of the first such window and drains on reductions. It
    sizes with the same latency model as `wva`, so it is a lower bound on
    cost only as far as that model is exact.
    """

    name = "oracle"
    drains = True

    def __init__(self, context: PolicyContext) -> None:
        self.context = context
        self.lookahead_s = context.startup_delay_s + context.control_period_s
        self.trace_end_s = max((r.arrival_s for r in context.trace), default=0.0)

    def _plan(self, now_s: float, current: Mapping[str, int]) -> dict[str, int]:
        rate = peak_rate(
            self.context.trace, now_s, now_s + self.lookahead_s, self.trace_end_s
        )
        return cheapest_allocation(self.context, rate, current, CHANGE_PENALTY_USD)

    def initial_replicas(self) -> dict[str, int] | None:
        return self._plan(0.0, {})

    def decide(self, observation: Observation) -> dict[str, Decision]:
        current = {v.name: v.spec_replicas for v in observation.variants}
        plan = self._plan(observation.now_s, current)
        growing = any(plan.get(n, c) > c for n, c in current.items())
        starting = any(v.pending_replicas for v in observation.variants)
        decisions = {}
        for variant in observation.variants:
            target = plan.get(variant.name, variant.spec_replicas)
            # A swap between variants keeps the old replicas until the new
            # ones are ready, so capacity never dips during a start-up delay.
            if target < variant.spec_replicas and (growing or starting):
                target = variant.spec_replicas
            decisions[variant.name] = Decision(target, least_loaded(variant))
        return decisions


def least_loaded(variant: VariantView) -> tuple[str, ...]:
    """Pods ranked for removal: not ready first, then the fewest in-flight tokens."""
    ranked = sorted(
        variant.replicas, key=lambda r: (r.ready, r.in_flight_tokens, r.pod)
    )
    return tuple(r.pod for r in ranked)
