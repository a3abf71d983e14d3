"""Where a model's new replica goes: free GPUs, crash loops and pending timeouts.

These rules run after the `wva-v1` analysis of a model and may move its
scale-up to another variant of the same model. The replica goes to the
next-cheapest variant by price per replica-hour (ties by name) that has
room below its effective max, nothing pending and no rejected scale-up in
its cool-down. A scale-up moves when:

- a replica Pending past the timeout: its variant goes back by one, the
  pod is the victim, and the replica moves (`unschedulable`);
- the chosen variant has a crash-looping pod: the replica moves, and a
  variant at 0 replicas may take it (`crash_loop`);
- the GPU limiter finds fewer free GPUs than the chosen variant needs
  per replica: the replica moves (`no_free_gpu:<accelerator>`). With no
  variant left, nothing changes and the decision is bound by `gpu_budget`.

Free GPUs per accelerator are the smaller of the free count on the nodes
and the catalogue budget (`gpus_available`) minus the GPUs the console's
variants use. A side that is unknown is skipped. With both unknown the
count is unknown (None), which never limits and is never read as zero.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from wva_web.catalog.models import Accelerator
from wva_web.control.cycle_safety import (
    CRASH_LOOP,
    GPU_BUDGET,
    INVENTORY_UNKNOWN,
    SILENT_REPLICA,
    STUCK_QUEUE,
    UNSCHEDULABLE,
    SafetySettings,
    add_condition,
    add_reason,
    no_free_gpu,
)
from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.integrations import kube

logger = logging.getLogger(__name__)

FreeGpus = dict[int, int | None]


def inventory_free(
    accelerator: Accelerator, inventory: dict[str, kube.GpuCount] | None
) -> int | None:
    """Free GPUs of the accelerator on the nodes; None when not known.

    A label that no node carries is treated as unknown, since it more
    likely names a misconfigured `node_label_value` than an empty cluster.
    """
    if inventory is None:
        return None
    count = inventory.get(accelerator.node_label_value or accelerator.name)
    return None if count is None else count.free


def budget_free(accelerator: Accelerator, views: list[VariantView]) -> int | None:
    """Return the catalogue budget minus GPUs the console's variants use.

    None when the budget is unknown.
    """
    if accelerator.gpus_available is None:
        return None
    used = 0
    for view in views:
        if view.current is None:
            return None
        used += view.current * view.variant.gpus_per_replica
    return max(0, accelerator.gpus_available - used)


def free_gpus(
    views: Iterable[VariantView], inventory: dict[str, kube.GpuCount] | None
) -> tuple[FreeGpus, dict[str, dict[str, int | None]]]:
    """Return free GPUs by accelerator id, and both sides by name for the inputs."""
    per_accelerator: dict[int, list[VariantView]] = {}
    accelerators: dict[int, Accelerator] = {}
    for view in views:
        accelerator = view.variant.accelerator
        accelerators[accelerator.pk] = accelerator
        per_accelerator.setdefault(accelerator.pk, []).append(view)
    free: FreeGpus = {}
    detail: dict[str, dict[str, int | None]] = {}
    for pk, accelerator in accelerators.items():
        nodes = inventory_free(accelerator, inventory)
        budget = budget_free(accelerator, per_accelerator[pk])
        known = [value for value in (nodes, budget) if value is not None]
        free[pk] = min(known) if known else None
        detail[accelerator.name] = {"nodes": nodes, "budget": budget, "free": free[pk]}
    return free, detail


def _lacks_gpus(view: VariantView, free: FreeGpus, replicas: int) -> bool:
    available = free.get(view.variant.accelerator_id)
    needed = view.variant.gpus_per_replica * replicas
    return available is not None and available < needed


def _take(view: VariantView, free: FreeGpus, replicas: int) -> None:
    key = view.variant.accelerator_id
    available = free.get(key)
    if available is not None:
        free[key] = max(0, available - view.variant.gpus_per_replica * replicas)


def alternatives(
    views: list[VariantView],
    excluded: set[int],
    free: FreeGpus,
    replicas: int,
    allow_zero: bool,
) -> list[VariantView]:
    """Variants that can take `replicas` more, cheapest first (ties by name)."""
    candidates = []
    for view in views:
        current = view.current
        if view.variant.pk in excluded or current is None:
            continue
        if current >= view.max_replicas or (current == 0 and not allow_zero):
            continue
        if 1 in view.rejected:
            continue
        if view.crash_looping or any(pod.pending for pod in view.live_pods):
            continue
        if _lacks_gpus(view, free, replicas):
            continue
        candidates.append(view)
    return sorted(
        candidates, key=lambda v: (v.variant.usd_per_replica_hour, v.variant.name)
    )


def _grow(
    view: VariantView,
    decision: VariantDecision,
    replicas: int,
    reasons: list[str],
    message: str,
) -> None:
    current = int(view.current or 0)
    decision.target = min(view.max_replicas, current + replicas)
    decision.victim_pod = ""
    decision.bound_by = ""
    decision.message = message
    decision.reasons = list(reasons)
    if decision.target == current:
        add_reason(decision, "no_change")


def place_model(
    views: list[VariantView],
    decided: dict[int, VariantDecision],
    free: FreeGpus,
    rules: SafetySettings,
    stuck_only: bool,
) -> None:
    """Apply the placement rules to one model's `wva-v1` decisions, in place.

    `stuck_only` is True when the scale-up trigger disappears once the
    replicas with stuck queues are left out.
    """
    if any(view.timed_out for view in views):
        _move_timed_out(views, decided, free)
    else:
        for view in views:
            decision = decided[view.variant.pk]
            if view.current is None or decision.target <= view.current:
                continue
            if stuck_only:
                _hold(decision, int(view.current))
                add_reason(decision, STUCK_QUEUE)
                decision.held_scale_up = STUCK_QUEUE
                logger.warning(
                    "variant %s: %s: no scale-up, the trigger comes only from "
                    "replicas with stuck queues",
                    view.variant.name,
                    STUCK_QUEUE,
                )
                continue
            _place_scale_up(view, views, decided, free, rules)
    for view in views:
        _guard_reduction(view, decided[view.variant.pk])


def _hold(decision: VariantDecision, current: int) -> None:
    decision.target = current
    decision.victim_pod = ""


def _place_scale_up(
    view: VariantView,
    views: list[VariantView],
    decided: dict[int, VariantDecision],
    free: FreeGpus,
    rules: SafetySettings,
) -> None:
    decision = decided[view.variant.pk]
    current = int(view.current or 0)
    replicas = decision.target - current
    accelerator = view.variant.accelerator
    if view.crash_looping:
        code, allow_zero = CRASH_LOOP, True
    elif rules.gpu_limiter and _lacks_gpus(view, free, replicas):
        code, allow_zero = no_free_gpu(accelerator.name), False
    else:
        if rules.gpu_limiter and free.get(accelerator.pk) is None:
            message = f"free {accelerator.name} GPUs are unknown: not limited"
            add_condition(
                view,
                decision,
                "GpuAvailable",
                INVENTORY_UNKNOWN,
                message,
                status="Unknown",
            )
        _take(view, free, replicas)
        return
    trigger = [code for code in decision.reasons if code.startswith("scale_up:")]
    wanted = decision.target
    _hold(decision, current)
    decision.held_scale_up = code
    others = alternatives(views, {view.variant.pk}, free, replicas, allow_zero)
    if code != CRASH_LOOP:
        decision.bound_by = GPU_BUDGET
        decision.analysis["wanted_replicas"] = wanted
        decision.analysis["free_gpus"] = free.get(accelerator.pk)
        message = (
            f"{free.get(accelerator.pk)} free {accelerator.name} GPUs, "
            f"{view.variant.gpus_per_replica} needed per replica"
        )
        add_condition(view, decision, "GpuAvailable", code, message)
    if not others:
        decision.message = (
            f"wants {wanted}, held at {current}: no other variant of the model "
            f"can take the replica ({code})"
        )
        logger.warning(
            "variant %s: %s: no other variant can take the replica",
            view.variant.name,
            code,
        )
        return
    target = others[0]
    message = f"replica moved from {view.variant.name} ({code})"
    _grow(target, decided[target.variant.pk], replicas, [*trigger, code], message)
    _take(target, free, replicas)
    logger.warning(
        "variant %s: %s: replica moved to %s",
        view.variant.name,
        code,
        target.variant.name,
    )


def _move_timed_out(
    views: list[VariantView], decided: dict[int, VariantDecision], free: FreeGpus
) -> None:
    """Scale back variants with pods Pending past the timeout; move the replicas."""
    stuck_variants = {view.variant.pk for view in views if view.timed_out}
    for view in views:
        if not view.timed_out or view.current is None:
            continue
        decision = decided[view.variant.pk]
        replicas = len(view.timed_out)
        decision.target = max(view.variant.min_replicas, view.current - replicas)
        decision.victim_pod = view.timed_out[0]
        decision.bound_by = ""
        decision.message = f"{', '.join(view.timed_out)} Pending past the timeout"
        add_reason(decision, UNSCHEDULABLE)
        others = alternatives(views, stuck_variants, free, replicas, allow_zero=False)
        if not others:
            logger.warning(
                "variant %s: %s: no other variant can take the replica",
                view.variant.name,
                UNSCHEDULABLE,
            )
            continue
        target = others[0]
        message = f"replica moved from {view.variant.name} ({UNSCHEDULABLE})"
        _grow(target, decided[target.variant.pk], replicas, [UNSCHEDULABLE], message)
        _take(target, free, replicas)
        logger.warning(
            "variant %s: %s: replica moved to %s",
            view.variant.name,
            UNSCHEDULABLE,
            target.variant.name,
        )


def _guard_reduction(view: VariantView, decision: VariantDecision) -> None:
    """Make reductions wait for an approver, and remove a dead replica first."""
    if view.current is None or decision.target >= view.current:
        return
    if view.silent:
        decision.needs_approval = SILENT_REPLICA
    elif view.stuck:
        decision.needs_approval = STUCK_QUEUE
    if decision.needs_approval:
        add_reason(decision, decision.needs_approval)
    dead = view.not_capacity
    if dead and not view.timed_out:
        # A crash-looping or silent replica serves nothing, so it leaves first.
        decision.victim_pod = dead[0]
