"""The product's own policy `wva`.

SLO sizing runs for each model with a known arrival rate, token lengths,
a service class and at least one variant with a latency profile. It gives
each variant's capacity in requests/s, and one global allocation (MILP
with a greedy fallback) chooses replicas for all such models at once.
Every other model gets `insufficient_data` and falls back to saturation
rules, which size a scale-up from token or batch capacity where known.

Safety rules apply on both paths. A variant with missing, stale or
invalid data is never reduced. No reduction happens while the model's own
data calls for a scale-up, within the stabilisation window after an
increase, or beyond the step and rate limits. A reduction names its
victims.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optimizer.allocation import (
    AllocationOptions,
    AllocationProblem,
    AllocationResult,
    AllocationVariant,
    ModelDemand,
    solve_allocation,
)
from optimizer.capacity import (
    ReplicaTokens,
    TokenShape,
    compute_bound_tokens,
    kv_pool_tokens,
    replica_capacity,
    required_capacity,
    spare_capacity,
    variant_capacity,
)
from optimizer.hpa import HpaResult
from optimizer.power import replica_power_w
from optimizer.queueing import LatencyProfile, replica_capacity_rps
from optimizer.saturation import SaturationConfig, check_scale_down
from optimizer.state import (
    ClusterState,
    Demand,
    ServiceClass,
    VariantState,
    WvaSettings,
    hpa_for_variant,
)
from optimizer.wva_signals import (
    ModelSpares,
    VariantSignals,
    choose_victims,
    model_spares,
    variant_signals,
)

logger = logging.getLogger(__name__)

# Growth of a model whose every replica is saturated, when its measured
# demand does not call for more: capacity sized to this multiple of its
# ready capacity. Like the default scale-up policy of the Kubernetes HPA
# (100% per 15 s period, `optimizer.hpa.HpaBehavior`), it doubles the
# fleet each time new replicas become ready, until a replica is no longer
# saturated.
SATURATED_GROWTH = 2.0

# Inside the dead band a variant keeps its replicas unless its price per
# request/s of capacity is over this multiple of the best live variant's.
POOR_VALUE_RATIO = 5.0

# The dead band reaches this fraction below the demand at
# `scale_up_headroom`, as the HPA's 10% tolerance does. Filling a smaller
# shortfall exactly buys a replica of poor value per request/s each time the
# capacity estimate moves, while most of the headroom is still there.
SCALE_UP_TOLERANCE = 0.05


@dataclass(frozen=True)
class WvaDecision:
    """Target of one variant with reason codes, the binding constraint and inputs.

    `bound_by` is one of `max_replicas`, `min_replicas`, `gpu_budget`,
    `missing_data`, `stabilization`, `scale_down_limit`, `transition` or "".
    `victim_pods` lists the replicas to remove on a reduction, in order.
    """

    variant: str
    model: str
    current_replicas: int
    target_replicas: int
    reasons: tuple[str, ...]
    bound_by: str
    message: str
    victim_pods: tuple[str, ...]
    degraded: bool
    inputs: Mapping[str, Any]
    hpa: HpaResult | None = None

    @property
    def victim_pod(self) -> str | None:
        return self.victim_pods[0] if self.victim_pods else None


@dataclass(frozen=True)
class WvaResult:
    """Decisions for every variant, unserved demand (requests/s) and the solver.

    `solver` is `milp` or `greedy` when an allocation ran, else `None`.
    `success`, `status` and `message` come from the allocation, or are
    `True`, 0 and "no model was sized" when none ran.
    """

    decisions: tuple[WvaDecision, ...]
    unserved: Mapping[str, float]
    solver: str | None
    success: bool
    status: int
    message: str
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class _Plan:
    """Working record of one variant while the policy decides."""

    signals: VariantSignals
    target: int
    reasons: list[str] = field(default_factory=list)
    bound_by: str = ""
    message: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> VariantState:
        return self.signals.variant

    def add(self, *codes: str) -> None:
        for code in codes:
            if code not in self.reasons:
                self.reasons.append(code)

    def bind(self, bound_by: str) -> None:
        if not self.bound_by:
            self.bound_by = bound_by


@dataclass(frozen=True)
class _Sizing:
    """SLO inputs of one model, or the reason sizing cannot run."""

    arrival_rate: float
    shape: TokenShape
    service_class: ServiceClass
    includes_rejected: bool = False


def _sizing_inputs(
    state: ClusterState, model: str, plans: Sequence[_Plan]
) -> _Sizing | str:
    demand = state.demand.get(model, Demand())
    missing = [
        key
        for key in ("arrival_rate", "avg_input_tokens", "avg_output_tokens")
        if getattr(demand, key) is None
    ]
    if missing:
        return "no_demand:" + ",".join(missing)
    names = [p.variant.service_class for p in plans if p.variant.service_class]
    classes = [state.service_classes[n] for n in names if n in state.service_classes]
    if not classes:
        return "no_service_class"
    if not any(p.variant.profile.latency is not None for p in plans):
        return "no_profile"
    arrival = demand.arrival_rate
    input_tokens = demand.avg_input_tokens
    output_tokens = demand.avg_output_tokens
    if arrival is None or not input_tokens or not output_tokens:
        return "no_demand:token_lengths"
    shape = TokenShape(input_tokens, output_tokens)
    best = min(classes, key=lambda c: (c.priority, c.name))
    return _Sizing(arrival, shape, best, demand.includes_rejected)


def _last_increase_within(variant: VariantState, now_s: float, window_s: float) -> bool:
    for event in reversed(variant.scale_events):
        if now_s - event.at_s >= window_s:
            return False
        if event.to_replicas > event.from_replicas:
            return True
    return False


def _removals_allowed(
    variant: VariantState, now_s: float, settings: WvaSettings
) -> int:
    """Replicas that may leave now under the step and the scale-down rate limit."""
    allowed = settings.scale_down_step
    limit = variant.scale_down_limit
    if limit is not None:
        removed = sum(
            max(0, e.from_replicas - e.to_replicas)
            for e in variant.scale_events
            if now_s - e.at_s < limit.period_s
        )
        allowed = min(allowed, max(0, limit.replicas - removed))
    return allowed


def _free_gpus(state: ClusterState) -> dict[str, int | None]:
    return {name: a.gpus_available for name, a in state.accelerators.items()}


def _power_w(variant: VariantState, settings: WvaSettings) -> float:
    curve = variant.accelerator.power
    if curve is None:
        return 0.0
    return replica_power_w(curve, settings.scale_up_headroom, variant.gpus_per_replica)


class _ModelRules:
    """Safety rules and reason codes of one model, shared by both paths."""

    def __init__(
        self,
        state: ClusterState,
        plans: Sequence[_Plan],
        config: SaturationConfig,
    ) -> None:
        self.state = state
        self.plans = plans
        self.config = config
        self.spares: ModelSpares = model_spares([p.signals for p in plans], config)
        non_saturated = [v for p in plans for v in p.signals.non_saturated]
        self.non_saturated_count = len(non_saturated)
        self.check = (
            check_scale_down(
                [v.sample for v in non_saturated],
                config,
            )
            if len(non_saturated) >= 2
            else None
        )
        self.pending = [pod for p in plans for pod in p.signals.pending]
        self.unnamed_pending = [
            f"{p.variant.name}={p.signals.on_the_way - len(p.signals.pending)}"
            for p in plans
            if p.signals.on_the_way > len(p.signals.pending)
        ]
        self.saturated = [pod for p in plans for pod in p.signals.saturated]

    def model_reasons(self) -> list[str]:
        reasons: list[str] = []
        if self.saturated:
            reasons.append("saturated:" + ",".join(self.saturated))
        if self.pending:
            reasons.append("pending:" + ",".join(self.pending))
        reasons.extend(f"pending:{item}" for item in self.unnamed_pending)
        return reasons

    def reduction_block(self) -> tuple[str, str] | None:
        """Return the model-wide reason and bound that forbid a reduction."""
        if self.spares.up_reasons:
            return self.spares.up_reasons[0], ""
        if self.check is None:
            return "scale_down:too_few_non_saturated", ""
        if not self.check.safe:
            return "scale_down:unsafe", ""
        if self.pending or self.unnamed_pending:
            return "transition_pending", "transition"
        return None

    def variant_floor(self, plan: _Plan) -> tuple[int, list[str], str]:
        """Return the lowest target allowed for a variant, with its reasons."""
        variant = plan.variant
        settings = self.state.wva
        current = variant.current_replicas
        stuck = len(plan.signals.stuck)
        if plan.signals.degraded:
            return current - stuck, [], "missing_data"
        block = self.reduction_block()
        # Replicas still waiting for a node (phase Pending). A Running replica
        # that is not Ready may be loading its model or failing, and its
        # removal follows the rules for silent replicas instead.
        # A Pending pod with a node pulls its image and serves soon: it may
        # be the new half of a swap between variants, so it stays.
        unscheduled = sum(
            1
            for replica in variant.replicas
            if replica.phase == "Pending"
            and replica.pod in plan.signals.pending
            and replica.scheduled is not True
        )
        if block is not None and block[0] == "transition_pending" and unscheduled:
            # The load dropped while replicas of this variant wait for a node.
            # Those serve nothing, so removing them first is safe even
            # though the change has not landed yet.
            floor = max(variant.min_replicas, current - stuck - unscheduled)
            return floor, ["scale_down:pending_first"], ""
        if block is not None:
            return current - stuck, [block[0]], block[1]
        if _last_increase_within(variant, self.state.now_s, settings.stabilization_s):
            return current - stuck, ["stabilized"], "stabilization"
        allowed = _removals_allowed(variant, self.state.now_s, settings)
        floor = max(variant.min_replicas, current - stuck - allowed)
        if allowed < settings.scale_down_step:
            return floor, ["scale_down_limit"], "scale_down_limit"
        return floor, [], ""


def _plan_variants(state: ClusterState) -> dict[str, list[_Plan]]:
    by_model: dict[str, list[_Plan]] = {}
    for variant in state.variants:
        config = state.saturation_for(variant.model)
        signals = variant_signals(variant, config, state.wva.pending_timeout_s)
        plan = _Plan(signals, variant.current_replicas)
        if signals.missing:
            plan.add("missing_metrics:" + ",".join(signals.missing))
        if signals.unlisted:
            plan.add(f"missing_samples:{variant.name}={signals.unlisted}")
        plan.add(*signals.problems)
        if signals.stuck:
            plan.add("unschedulable:" + ",".join(signals.stuck))
        by_model.setdefault(variant.model, []).append(plan)
    return by_model


def _max_batch(variant: VariantState, settings: WvaSettings) -> int:
    return variant.profile.max_num_seqs or settings.default_max_batch


def _capacity_rps(plan: _Plan, sizing: _Sizing, state: ClusterState) -> float | None:
    variant = plan.variant
    latency = variant.profile.latency
    if latency is None:
        return None
    service_class = state.service_classes.get(
        variant.service_class or "", sizing.service_class
    )
    profile = LatencyProfile(*latency, max_batch=_max_batch(variant, state.wva))
    return replica_capacity_rps(
        profile,
        sizing.shape.input_tokens,
        sizing.shape.output_tokens,
        service_class.ttft_ms,
        service_class.itl_ms,
    )


@dataclass
class _SloModel:
    model: str
    sizing: _Sizing
    plans: list[_Plan]
    rules: _ModelRules
    capacities: dict[str, float]
    required: float
    fixed_rps: float


def _prepare_slo(
    state: ClusterState,
    model: str,
    plans: list[_Plan],
    rules: _ModelRules,
    sizing: _Sizing,
) -> tuple[_SloModel, list[AllocationVariant]]:
    settings = state.wva
    capacities: dict[str, float] = {}
    fixed = 0.0
    members: list[AllocationVariant] = []
    for plan in plans:
        variant = plan.variant
        capacity = _capacity_rps(plan, sizing, state)
        if capacity is None:
            plan.add(f"no_profile:{variant.name}")
            fixed += variant.completion_rate or 0.0
            plan.inputs["completion_rate"] = variant.completion_rate
            continue
        capacities[variant.name] = capacity
        plan.inputs["capacity_rps"] = capacity
        if capacity == 0:
            plan.add(f"slo_unreachable:{variant.name}")
        floor, reasons, bound = rules.variant_floor(plan)
        if capacity == 0:
            floor = max(floor, variant.current_replicas - len(plan.signals.stuck))
        ceiling = variant.max_replicas
        if plan.signals.stuck:
            ceiling = min(ceiling, variant.current_replicas - len(plan.signals.stuck))
        # A floor above the ceiling (a variant above its max, or held on
        # missing data) wins: the allocation never forces that reduction.
        floor = max(floor, 0)
        plan.inputs["floor"] = floor
        plan.inputs["floor_reasons"] = reasons
        plan.inputs["floor_bound"] = bound
        members.append(
            AllocationVariant(
                name=variant.name,
                model=model,
                accelerator=variant.accelerator.name,
                gpus_per_replica=variant.gpus_per_replica,
                usd_per_replica_hour=variant.usd_per_replica_hour,
                capacity_per_replica=capacity,
                min_replicas=floor,
                max_replicas=max(floor, ceiling),
                current_replicas=variant.current_replicas,
                watts_per_replica=_power_w(variant, settings),
            )
        )
    required = max(0.0, sizing.arrival_rate / settings.scale_up_headroom - fixed)
    if (
        rules.saturated
        and rules.non_saturated_count == 0
        and not sizing.includes_rejected
    ):
        # Requests rejected at the router never reach a replica's counters,
        # so without the gateway's count the measured demand of a model
        # whose every replica is saturated is only a lower bound.
        ready = math.fsum(
            capacities.get(p.variant.name, 0.0) * len(p.signals.ready) for p in plans
        )
        at_capacity = sizing.arrival_rate >= ready * settings.scale_up_headroom
        if at_capacity and ready * SATURATED_GROWTH > required:
            required = ready * SATURATED_GROWTH
            for plan in plans:
                plan.add("scale_up:saturated_growth")
    else:
        members = _hold_in_dead_band(
            members, plans, capacities, sizing, fixed, settings
        )
    slo = _SloModel(model, sizing, plans, rules, capacities, required, fixed)
    return slo, members


def _hold_in_dead_band(
    members: list[AllocationVariant],
    plans: Sequence[_Plan],
    capacities: Mapping[str, float],
    sizing: _Sizing,
    fixed: float,
    settings: WvaSettings,
) -> list[AllocationVariant]:
    """Hold the live replicas while capacity is in the dead band.

    The dead band is live capacity between the demand at
    `scale_up_headroom` and at `scale_down_headroom`. Inside it no variant
    grows, so a small move of demand neither adds replicas nor swaps them
    to another variant. Every variant keeps its live replicas too, except
    one whose price per request/s is over POOR_VALUE_RATIO times that of
    the best live variant: the allocation may remove those, so replicas
    added in a burst do not stay for good. Below the band the allocation
    scales up, and above it the allocation may reduce.
    """
    live = {
        p.variant.name: p.variant.current_replicas - len(p.signals.stuck) for p in plans
    }
    supply = math.fsum(capacities[m.name] * live[m.name] for m in members)
    low = (1.0 - SCALE_UP_TOLERANCE) * sizing.arrival_rate / settings.scale_up_headroom
    low -= fixed
    high = sizing.arrival_rate / settings.scale_down_headroom - fixed
    if not low <= supply <= high:
        return members
    unit_costs = {
        m.name: m.usd_per_replica_hour / m.capacity_per_replica
        for m in members
        if m.capacity_per_replica > 0
    }
    best = min(
        (cost for name, cost in unit_costs.items() if live[name] > 0),
        default=math.inf,
    )
    held: list[AllocationVariant] = []
    for plan in plans:
        member = next((m for m in members if m.name == plan.variant.name), None)
        if member is None:
            continue
        plan.add("dead_band")
        ceiling = max(member.min_replicas, min(member.max_replicas, live[member.name]))
        floor = member.min_replicas
        if unit_costs.get(member.name, math.inf) <= POOR_VALUE_RATIO * best:
            floor = max(floor, live[member.name])
        held.append(
            dataclasses.replace(
                member, min_replicas=floor, max_replicas=max(floor, ceiling)
            )
        )
    return held


def _explain_slo(
    slo: _SloModel, result: AllocationResult, free: Mapping[str, int | None]
) -> None:
    unserved = result.unserved.get(slo.model, 0.0)
    targets = _make_before_break(slo, result.replicas) if result.success else {}
    for plan in slo.plans:
        variant = plan.variant
        plan.add("sized_by_slo")
        plan.add(*slo.rules.model_reasons())
        if variant.name not in slo.capacities:
            plan.add("no_change")
            continue
        current = variant.current_replicas
        if not result.success:
            plan.add("allocation_failed", "no_change")
            continue
        plan.target = targets[variant.name]
        if plan.target > current:
            plan.add("scale_up:slo")
            if free.get(variant.accelerator.name, None) is None:
                plan.add("inventory_unknown")
        elif plan.target < current:
            plan.add("scale_down:spare_capacity")
        else:
            plan.add("no_change")
        floor = plan.inputs["floor"]
        if plan.target == floor and floor >= current - len(plan.signals.stuck):
            plan.add(*plan.inputs["floor_reasons"])
            if plan.inputs["floor_bound"]:
                plan.bind(plan.inputs["floor_bound"])
        capacity = slo.capacities[variant.name]
        if unserved > 0 and capacity > 0:
            _explain_shortfall(plan, unserved, capacity, free)
    _explain_skipped(slo, free)


def _make_before_break(slo: _SloModel, replicas: Mapping[str, int]) -> dict[str, int]:
    """Keep the ready replicas a reduction would remove while others start.

    A reduction in the same decision as an increase, or while a replica of
    the model is starting, goes ahead only when the replicas that stay
    ready cover the demand at `scale_up_headroom`. Otherwise every reduced
    variant keeps its live replicas, so a swap between variants never drops
    capacity for a start-up delay: the old replicas leave in a later
    decision, once the new ones are ready.
    """
    targets = {
        p.variant.name: replicas[p.variant.name]
        for p in slo.plans
        if p.variant.name in slo.capacities
    }
    live = {
        p.variant.name: p.variant.current_replicas - len(p.signals.stuck)
        for p in slo.plans
    }
    reduced = [name for name, target in targets.items() if target < live[name]]
    starting = any(targets[name] > live[name] for name in targets) or any(
        p.signals.on_the_way > 0 for p in slo.plans
    )
    if not reduced or not starting:
        return targets
    ready_after = math.fsum(
        slo.capacities[p.variant.name]
        * min(len(p.signals.ready), targets[p.variant.name])
        for p in slo.plans
        if p.variant.name in targets
    )
    if ready_after >= slo.required:
        return targets
    for plan in slo.plans:
        name = plan.variant.name
        if name in reduced:
            targets[name] = live[name]
            plan.add("make_before_break")
            plan.bind("transition")
    return targets


def _explain_shortfall(
    plan: _Plan, unserved: float, capacity: float, free: Mapping[str, int | None]
) -> None:
    variant = plan.variant
    if plan.target >= variant.max_replicas:
        wanted = plan.target + math.ceil(round(unserved / capacity, 9))
        plan.add("capped_by_max")
        plan.bind("max_replicas")
        plan.message = f"wants {wanted}, capped at {variant.max_replicas} (max)"
    elif free.get(variant.accelerator.name) is not None:
        plan.add(f"no_free_gpu:{variant.accelerator.name}")
        plan.bind("gpu_budget")


def _explain_skipped(slo: _SloModel, free: Mapping[str, int | None]) -> None:
    """Name the GPU type that kept a cheaper variant from taking an increase."""
    raised = [p for p in slo.plans if p.target > p.variant.current_replicas]
    for plan in slo.plans:
        name = plan.variant.name
        if name not in slo.capacities or slo.capacities[name] <= 0:
            continue
        accelerator = plan.variant.accelerator.name
        available = free.get(accelerator)
        if available is None or plan.target > plan.variant.current_replicas:
            continue
        # GPUs of this type that the decision's own increases take.
        taken = sum(
            (p.target - p.variant.current_replicas) * p.variant.gpus_per_replica
            for p in raised
            if p.variant.accelerator.name == accelerator
        )
        if available - taken >= plan.variant.gpus_per_replica:
            # A GPU was free: the allocation chose the other variant for its
            # total cost (whole replicas), not for want of GPUs.
            continue
        unit_cost = plan.variant.usd_per_replica_hour / slo.capacities[name]
        for other in raised:
            other_cost = (
                other.variant.usd_per_replica_hour / slo.capacities[other.variant.name]
            )
            if unit_cost < other_cost and plan.target < plan.variant.max_replicas:
                code = f"no_free_gpu:{accelerator}"
                other.add(code)
                plan.add(code)
                plan.bind("gpu_budget")


def _token_shape(state: ClusterState, model: str) -> TokenShape | None:
    demand = state.demand.get(model, Demand())
    if demand.avg_input_tokens and demand.avg_output_tokens:
        return TokenShape(demand.avg_input_tokens, demand.avg_output_tokens)
    return None


@dataclass(frozen=True)
class _TokenTotals:
    """A model's token load and supply, from replicas with complete data."""

    demand: float
    supply_live: float
    supply_ready: float
    per_replica: dict[str, float]


def _token_totals(
    state: ClusterState, plans: Sequence[_Plan], config: SaturationConfig
) -> _TokenTotals | None:
    """Add up token load and capacity, or return None when a variant's is unknown."""
    shape = _token_shape(state, plans[0].variant.model)
    if shape is None:
        return None
    demand = supply_live = supply_ready = 0.0
    per_replica: dict[str, float] = {}
    for plan in plans:
        variant = plan.variant
        profile = variant.profile
        k2 = compute_bound_tokens(
            shape,
            profile.max_num_seqs,
            profile.max_num_batched_tokens,
            learned_tokens=profile.learned_compute_tokens,
        )
        capacities = []
        for view in plan.signals.ready:
            pool = kv_pool_tokens(None, None, variant.kv_pools.get(view.pod))
            if pool is None:
                pool = kv_pool_tokens(None, None, profile.kv_tokens)
            tokens = ReplicaTokens(view.pod, pool, view.kv, view.waiting)
            capacities.append(
                replica_capacity(tokens, shape, config.kv_cache_threshold, k2)
            )
        known = [c for c in capacities if c.demand_tokens is not None]
        summary = variant_capacity(known, ready_replicas=len(known), pending_replicas=0)
        if summary.per_replica is None:
            return None
        per_replica[variant.name] = summary.per_replica
        demand += summary.demand or 0.0
        live = variant.current_replicas - len(plan.signals.stuck)
        supply_live += summary.per_replica * live
        supply_ready += summary.per_replica * len(plan.signals.ready)
    return _TokenTotals(demand, supply_live, supply_ready, per_replica)


def _token_deficit(
    state: ClusterState, plans: Sequence[_Plan], config: SaturationConfig
) -> tuple[float, dict[str, float]] | None:
    """Return the model's required token capacity and each variant's per replica."""
    totals = _token_totals(state, plans, config)
    if totals is None:
        return None
    required = required_capacity(
        totals.demand, totals.supply_live, state.wva.scale_up_headroom
    )
    return (required or 0.0), totals.per_replica


def _token_spare_allows(
    state: ClusterState, plans: Sequence[_Plan], config: SaturationConfig, chosen: _Plan
) -> bool:
    """Tell whether spare token capacity covers one replica of `chosen`.

    True when token data is incomplete: the saturation check then decides.
    """
    totals = _token_totals(state, plans, config)
    if totals is None:
        return True
    spare = spare_capacity(
        totals.demand, totals.supply_ready, state.wva.scale_down_headroom
    )
    unit = totals.per_replica.get(chosen.variant.name)
    return spare is None or unit is None or spare >= unit


def _slot_deficit(state: ClusterState, plans: Sequence[_Plan]) -> float | None:
    """Return running-plus-waiting requests beyond the batch slots at headroom."""
    load = 0.0
    slots = 0.0
    headroom = state.wva.scale_up_headroom
    for plan in plans:
        if plan.variant.profile.max_num_seqs is None:
            return None
        for view in plan.signals.ready:
            if view.running is not None and view.waiting is not None:
                load += view.running + view.waiting
        live = plan.variant.current_replicas - len(plan.signals.stuck)
        slots += live * plan.variant.profile.max_num_seqs * headroom
    return max(0.0, load - slots)


def _extra_replicas(
    state: ClusterState, plans: Sequence[_Plan], chosen: _Plan, config: SaturationConfig
) -> tuple[int, list[str]]:
    extra = 1
    reasons: list[str] = []
    slots = _slot_deficit(state, plans)
    batch = chosen.variant.profile.max_num_seqs
    if slots is not None and batch:
        need = math.ceil(round(slots / (batch * state.wva.scale_up_headroom), 9))
        if need > extra:
            extra = need
            reasons.append("sized_by_batch_slots")
    tokens = _token_deficit(state, plans, config)
    if tokens is not None:
        required, per_replica = tokens
        unit = per_replica.get(chosen.variant.name)
        if unit:
            need = math.ceil(round(required / unit, 9))
            if need > extra:
                extra = need
                reasons.append("sized_by_kv_tokens")
    return extra, reasons


def _gpu_room(variant: VariantState, free: Mapping[str, int | None]) -> int | None:
    available = free.get(variant.accelerator.name)
    if available is None:
        return None
    return available // variant.gpus_per_replica


def _unit_price(plan: _Plan, settings: WvaSettings) -> float:
    return plan.variant.usd_per_replica_hour + settings.usd_per_kwh / 1000.0 * _power_w(
        plan.variant, settings
    )


def _class_capacity(plan: _Plan, state: ClusterState) -> float | None:
    """Return the capacity of one replica within its class's ITL and TTFT.

    With token lengths it is requests/s (`replica_capacity_rps`). Without
    them it is the decode throughput in tokens/s of the largest batch whose
    step meets the class's ITL, 0.0 when a batch of one already misses it.
    A model has token lengths for all its variants or for none, so the two
    units are never compared. None without a latency profile or a known
    service class.
    """
    variant = plan.variant
    latency = variant.profile.latency
    service_class = state.service_classes.get(variant.service_class or "")
    if latency is None or service_class is None:
        return None
    profile = LatencyProfile(*latency, max_batch=_max_batch(variant, state.wva))
    shape = _token_shape(state, variant.model)
    if shape is None:
        return _decode_tokens_per_s(profile, service_class.itl_ms)
    return replica_capacity_rps(
        profile,
        shape.input_tokens,
        shape.output_tokens,
        service_class.ttft_ms,
        service_class.itl_ms,
    )


def _decode_tokens_per_s(profile: LatencyProfile, itl_ms: float) -> float:
    if profile.beta > 0:
        batch = min(
            profile.max_batch, math.floor((itl_ms - profile.alpha) / profile.beta)
        )
    else:
        batch = profile.max_batch if profile.alpha <= itl_ms else 0
    if batch < 1:
        return 0.0
    step_ms = profile.decode_step_ms(batch)
    return 1000.0 * batch / step_ms if step_ms > 0 else math.inf


def _growth_rank(plan: _Plan, state: ClusterState) -> tuple[int, float, str]:
    """Order variants for a saturation scale-up, lowest first.

    Variants whose latency model meets the class's targets come first,
    ordered by price per unit of `_class_capacity`. Variants of unknown
    capacity follow, by price per replica-hour, and variants that cannot
    meet the targets come last.
    """
    price = _unit_price(plan, state.wva)
    capacity = _class_capacity(plan, state)
    if capacity is None:
        return 1, price, plan.variant.name
    if capacity <= 0:
        return 2, price, plan.variant.name
    return 0, price / capacity, plan.variant.name


def _fallback_up(
    state: ClusterState,
    plans: list[_Plan],
    rules: _ModelRules,
    free: dict[str, int | None],
) -> None:
    """Grow the variant of lowest `_growth_rank` with nothing on its way and room."""
    config = rules.config
    # NOTE: a replica on its way excludes only its own variant, so another
    # variant, even one at 0 replicas, can grow while that replica starts.
    candidates = [p for p in plans if not p.signals.has_pending and not p.signals.stuck]
    with_room = [
        p for p in candidates if p.variant.current_replicas < p.variant.max_replicas
    ]
    skipped: list[str] = []
    usable: list[_Plan] = []
    for plan in with_room:
        room = _gpu_room(plan.variant, free)
        if room is not None and room < 1:
            skipped.append(f"no_free_gpu:{plan.variant.accelerator.name}")
        else:
            usable.append(plan)

    for plan in plans:
        plan.add(*rules.spares.up_reasons, *rules.model_reasons())
    if not usable:
        _fallback_blocked(plans, candidates, with_room, skipped, rules, state)
        return

    chosen = min(usable, key=lambda p: _growth_rank(p, state))
    chosen.inputs["growth_rank"] = list(_growth_rank(chosen, state))
    extra, size_reasons = _extra_replicas(state, plans, chosen, config)
    variant = chosen.variant
    room = variant.max_replicas - variant.current_replicas
    gpu_room = _gpu_room(variant, free)
    step = min(extra, room)
    if gpu_room is not None and gpu_room < step:
        step = gpu_room
        chosen.add(f"no_free_gpu:{variant.accelerator.name}")
        chosen.bind("gpu_budget")
    if extra > room:
        wanted = variant.current_replicas + extra
        chosen.add("capped_by_max")
        chosen.bind("max_replicas")
        chosen.message = f"wants {wanted}, capped at {variant.max_replicas} (max)"

    chosen.target = variant.current_replicas + step
    chosen.add(*size_reasons, *skipped)
    if gpu_room is None:
        chosen.add("inventory_unknown")
    else:
        free[variant.accelerator.name] = (free[variant.accelerator.name] or 0) - (
            step * variant.gpus_per_replica
        )
    for plan in plans:
        if plan is not chosen:
            plan.add("no_change")


def _fallback_blocked(
    plans: Sequence[_Plan],
    candidates: Sequence[_Plan],
    with_room: Sequence[_Plan],
    skipped: Sequence[str],
    rules: _ModelRules,
    state: ClusterState,
) -> None:
    """Explain why a due scale-up found no variant to grow."""
    settings = state.wva
    for plan in plans:
        plan.add("no_change")
    if candidates and not with_room:
        cheapest = min(
            candidates, key=lambda p: (_unit_price(p, settings), p.variant.name)
        )
        variant = cheapest.variant
        cheapest.add("capped_by_max")
        cheapest.bind("max_replicas")
        cheapest.message = (
            f"wants {variant.current_replicas + 1}, "
            f"capped at {variant.max_replicas} (max)"
        )
        return
    if skipped:
        for plan in plans:
            plan.add(*skipped)
            plan.bind("gpu_budget")
        return
    for plan in plans:
        plan.add("no_candidate")
        plan.bind("transition" if rules.pending or rules.unnamed_pending else "")


def _fallback_down(state: ClusterState, plans: list[_Plan], rules: _ModelRules) -> None:
    """Remove one replica of the most expensive variant that the rules allow."""
    settings = state.wva
    for plan in plans:
        plan.add(*rules.model_reasons())
    choices: list[tuple[_Plan, int]] = []
    held: list[tuple[_Plan, list[str], str]] = []
    for plan in plans:
        floor, reasons, bound = rules.variant_floor(plan)
        # Without sizing data the fallback never scales a variant to zero.
        floor = max(floor, 1, plan.variant.min_replicas)
        if floor < plan.variant.current_replicas:
            choices.append((plan, floor))
            if "scale_down:pending_first" in reasons:
                plan.add("scale_down:pending_first")
        else:
            held.append((plan, reasons, bound))

    for plan, reasons, bound in held:
        plan.add("no_change", *reasons)
        if bound:
            plan.bind(bound)
        if plan.signals.stuck:
            plan.target = plan.variant.current_replicas - len(plan.signals.stuck)
    if not choices:
        return

    chosen, floor = min(
        choices,
        key=lambda item: (-_unit_price(item[0], settings), item[0].variant.name),
    )
    if not _token_spare_allows(state, plans, rules.config, chosen):
        for plan, _ in choices:
            plan.add("no_change", "scale_down:no_spare_tokens")
        return

    base = chosen.variant.current_replicas - len(chosen.signals.stuck)
    chosen.target = max(floor, base - 1)
    chosen.add("scale_down:safe")
    for plan, _ in choices:
        if plan is not chosen:
            plan.add("no_change")


def _fallback(
    state: ClusterState,
    plans: list[_Plan],
    rules: _ModelRules,
    free: dict[str, int | None],
    why: str,
) -> None:
    for plan in plans:
        plan.add("insufficient_data")
        plan.inputs["insufficient_data"] = why
    spares = rules.spares
    if spares.spare_kv is None:
        for plan in plans:
            plan.add("no_change", *rules.model_reasons())
            plan.bind("missing_data")
        return
    if spares.up_reasons:
        _fallback_up(state, plans, rules, free)
        return
    _fallback_down(state, plans, rules)


def _clamp_to_bounds(plan: _Plan, step: int) -> None:
    """Keep the target within min and max.

    A variant already above its max (after an edit of the max) comes down
    by at most `step` per decision, and not at all on missing data.
    """
    variant = plan.variant
    current = variant.current_replicas
    if plan.target > variant.max_replicas:
        if current > variant.max_replicas:
            if plan.signals.degraded:
                lowest = current
            else:
                lowest = max(variant.max_replicas, current - step)
            plan.target = min(plan.target, lowest)
            plan.add("above_max")
        else:
            plan.message = plan.message or (
                f"wants {plan.target}, capped at {variant.max_replicas} (max)"
            )
            plan.target = variant.max_replicas
            plan.add("capped_by_max")
        plan.bind("max_replicas")
    if plan.target < variant.min_replicas and not plan.signals.stuck:
        plan.target = variant.min_replicas
        plan.add("raised_to_min")
        plan.bind("min_replicas")


def _decision(plan: _Plan, state: ClusterState, spares: ModelSpares) -> WvaDecision:
    variant = plan.variant
    if plan.signals.stuck:
        # Pods pending past the timeout serve nothing and leave first.
        plan.target = min(
            plan.target, variant.current_replicas - len(plan.signals.stuck)
        )
    _clamp_to_bounds(plan, state.wva.scale_down_step)
    if plan.signals.degraded and plan.target == variant.current_replicas:
        plan.bind("missing_data")
    victims: tuple[str, ...] = ()
    if plan.target < variant.current_replicas:
        victims = choose_victims(plan.signals, variant.current_replicas - plan.target)
    inputs = dict(plan.inputs)
    for key in ("floor", "floor_reasons", "floor_bound"):
        inputs.pop(key, None)
    inputs.update(
        spare_kv=spares.spare_kv,
        spare_queue=spares.spare_queue,
        on_the_way=plan.signals.on_the_way,
        ready_with_data=len(plan.signals.ready) - len(plan.signals.missing),
    )
    return WvaDecision(
        variant=variant.name,
        model=variant.model,
        current_replicas=variant.current_replicas,
        target_replicas=plan.target,
        reasons=tuple(plan.reasons),
        bound_by=plan.bound_by,
        message=plan.message,
        victim_pods=victims,
        degraded=plan.signals.degraded,
        inputs=inputs,
        hpa=hpa_for_variant(state, variant) if variant.has_hpa else None,
    )


def decide_wva(state: ClusterState) -> WvaResult:
    """Decide `wva` targets for every variant of the state."""
    by_model = _plan_variants(state)
    free = _free_gpus(state)
    rules_by_model: dict[str, _ModelRules] = {}
    slo_models: list[_SloModel] = []
    members: list[AllocationVariant] = []
    demands: list[ModelDemand] = []
    summaries: dict[str, dict[str, Any]] = {}
    for model, plans in by_model.items():
        rules = _ModelRules(state, plans, state.saturation_for(model))
        rules_by_model[model] = rules
        sizing = _sizing_inputs(state, model, plans)
        summaries[model] = {
            "spare_kv": rules.spares.spare_kv,
            "spare_queue": rules.spares.spare_queue,
            "path": "slo" if isinstance(sizing, _Sizing) else "saturation",
        }
        if isinstance(sizing, str):
            _fallback(state, plans, rules, free, sizing)
            summaries[model]["insufficient_data"] = sizing
            continue
        slo, model_members = _prepare_slo(state, model, plans, rules, sizing)
        slo_models.append(slo)
        members.extend(model_members)
        demands.append(ModelDemand(model, slo.required, sizing.service_class.priority))
        summaries[model]["required_rps"] = slo.required
    result = _allocate(state, members, demands, free)
    unserved: dict[str, float] = {}
    for slo in slo_models:
        assert result is not None
        _explain_slo(slo, result, free)
        shortfall = result.unserved.get(slo.model, 0.0)
        if shortfall > 0:
            unserved[slo.model] = shortfall * state.wva.scale_up_headroom
    decisions = tuple(
        _decision(plan, state, rules_by_model[plan.variant.model].spares)
        for model_plans in by_model.values()
        for plan in model_plans
    )
    order = {v.name: i for i, v in enumerate(state.variants)}
    decisions = tuple(sorted(decisions, key=lambda d: order[d.variant]))
    if result is None:
        return WvaResult(
            decisions, unserved, None, True, 0, "no model was sized", summaries
        )
    return WvaResult(
        decisions,
        unserved,
        result.solver,
        result.success,
        result.status,
        result.message,
        summaries,
    )


def _allocate(
    state: ClusterState,
    members: Sequence[AllocationVariant],
    demands: Sequence[ModelDemand],
    free: Mapping[str, int | None],
) -> AllocationResult | None:
    if not members:
        return None
    settings = state.wva
    options = AllocationOptions(
        usd_per_kwh=settings.usd_per_kwh,
        change_penalty_usd=settings.change_penalty_usd,
        time_limit_s=settings.time_limit_s,
        solver=settings.solver,  # type: ignore[arg-type]
    )
    problem = AllocationProblem(tuple(members), tuple(demands), dict(free))
    result = solve_allocation(problem, options)
    if not result.success:
        logger.warning("wva allocation failed: %s", result.message)
    return result
