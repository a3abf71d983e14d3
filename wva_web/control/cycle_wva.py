"""Run the product's own policy `wva` on one model of the control cycle.

The cycle's views become the optimizer's JSON state (the schema of
`optimizer.state`). `decide_wva` decides every variant of the model, and
its decisions become the same VariantDecision objects that the `wva-v1`
path produces, so storing, proposals, modes, conditions and the HPA
counterfactual run unchanged.

The cycle adds what the live views cannot show: the model's demand and
its forecast (`cycle_demand`), the applied scale actions of the
stabilisation window as `scale_events`, and each variant's learned compute
bound.

The state leaves out what the cycle handles itself: the HPA counterfactual
(no `hpa` object), Pending timeouts (no `pending_s`, `cycle_safety` and
`cycle_placement` move those replicas) and crash-looping or silent
replicas, which are left out like in `wva-v1`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from optimizer.policy_wva import WvaDecision, WvaResult, decide_wva
from optimizer.state import WvaSettings, parse_state
from wva_web.catalog.models import InferenceModel, Policy, Variant
from wva_web.control import cycle_demand
from wva_web.control.cycle_placement import FreeGpus
from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.control.models import ActionState, ScaleAction, VariantState
from wva_web.integrations import kube, metrics

logger = logging.getLogger(__name__)

REPLICA_FIELDS = ("kv_cache_usage", "num_requests_waiting", "num_requests_running")


@dataclass
class ModelHistory:
    """Demand, scale events and learned bounds of one model, beyond its views.

    `scale_events` contains the applied changes of the stabilisation
    window, `learned_compute_tokens` each variant's learned k2, both by
    variant id.
    """

    demand: cycle_demand.ModelDemand
    scale_events: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    learned_compute_tokens: dict[int, float] = field(default_factory=dict)


def scale_events(
    views: list[VariantView], now: datetime, window_s: float
) -> dict[int, list[dict[str, Any]]]:
    """Return the applied scale actions of the last `window_s` seconds by variant."""
    since = now - timedelta(seconds=window_s)
    actions = ScaleAction.objects.filter(
        variant_id__in=[view.variant.pk for view in views],
        state=ActionState.APPLIED,
        applied_at__gte=since,
        applied_at__lte=now,
    ).order_by("applied_at", "pk")
    events: dict[int, list[dict[str, Any]]] = {}
    for action in actions:
        if action.applied_at is None:
            continue
        events.setdefault(action.variant_id, []).append(
            {
                "at_s": action.applied_at.timestamp(),
                "from": action.from_replicas,
                "to": action.effective_replicas,
            }
        )
    return events


def learned_compute_tokens(views: list[VariantView]) -> dict[int, float]:
    rows = VariantState.objects.filter(
        variant_id__in=[view.variant.pk for view in views],
        learned_compute_tokens__isnull=False,
    ).values_list("variant_id", "learned_compute_tokens")
    return {variant_id: float(tokens) for variant_id, tokens in rows}


def model_history(
    model: InferenceModel,
    views: list[VariantView],
    now: datetime,
    gateway_rates: Mapping[str, float] | None = None,
) -> ModelHistory:
    """Read the model's demand, recent scale events and learned compute bounds."""
    return ModelHistory(
        demand=cycle_demand.model_demand(model, views, now, gateway_rates),
        scale_events=scale_events(views, now, WvaSettings().stabilization_s),
        learned_compute_tokens=learned_compute_tokens(views),
    )


def model_policy(model: InferenceModel) -> str:
    """Return the model's policy, or the global default WVA_POLICY when it is empty."""
    return model.policy or str(settings.WVA_POLICY)


def uses_wva(model: InferenceModel) -> bool:
    return model_policy(model) == Policy.WVA


def replica_json(view: VariantView, pod: kube.PodInfo, now: datetime) -> dict[str, Any]:
    """Build one `replicas[]` row; a value not read as valid is None, never 0."""
    row: dict[str, Any] = {
        "pod": pod.name,
        "phase": pod.phase,
        "ready": pod.ready,
        "terminating": pod.terminating,
        "scheduled": bool(pod.node_name),
    }
    sample = view.samples.get(pod.name)
    values: dict[str, float | None] = dict.fromkeys(REPLICA_FIELDS)
    if sample is not None:
        for name in REPLICA_FIELDS:
            if sample.field_status.get(name) == metrics.OK:
                values[name] = getattr(sample, name)
        # The analysis reads the one-minute peaks, as `wva-v1` does.
        values.update(view.peaks.get(pod.name, {}))
        row["age_s"] = max(0.0, (now - sample.sampled_at).total_seconds())
    row.update(values)
    return row


def profile_json(variant: Variant) -> dict[str, Any]:
    """Merge the latency profile with the engine limits of the variant's fields."""
    stored = dict(variant.profile or {})
    profile: dict[str, Any] = {
        key: stored[key]
        for key in ("alpha", "beta", "gamma", "delta", "kv_tokens")
        if key in stored
    }
    blocks, block_size = stored.get("num_gpu_blocks"), stored.get("block_size")
    if "kv_tokens" not in profile and blocks and block_size:
        profile["kv_tokens"] = float(blocks) * float(block_size)
    profile["max_num_seqs"] = variant.max_num_seqs
    profile["max_model_len"] = variant.max_model_len
    profile["max_num_batched_tokens"] = variant.max_num_batched_tokens or stored.get(
        "max_num_batched_tokens"
    )
    return profile


def variant_json(
    view: VariantView,
    desired: int | None,
    excluded: frozenset[str],
    now: datetime,
    history: ModelHistory | None = None,
) -> dict[str, Any]:
    """Build one `variants[]` entry; pods that are not capacity are left out."""
    variant = view.variant
    current = int(view.current or 0)
    # The effective max: a variant that may not grow enters with max = current.
    maximum = view.max_replicas
    profile = profile_json(variant)
    events: list[dict[str, Any]] = []
    completion_rate = None
    if history is not None:
        events = history.scale_events.get(variant.pk, [])
        learned = history.learned_compute_tokens.get(variant.pk)
        if learned is not None:
            profile["learned_compute_tokens"] = learned
        if history.demand.known:
            rates = history.demand.variant_completion_rates
            completion_rate = rates.get(variant.name, 0.0)
    return {
        "name": variant.name,
        "model": variant.model.name,
        "accelerator": variant.accelerator.name,
        "service_class": variant.model.service_class.name,
        "gpus_per_replica": variant.gpus_per_replica,
        "min_replicas": min(variant.min_replicas, maximum),
        "max_replicas": maximum,
        "current_replicas": current,
        "ready_replicas": sum(1 for pod in view.ready_pods if pod.name not in excluded),
        # Pending pods, plus replicas of spec.replicas without a pod object yet.
        "pending_replicas": sum(1 for pod in view.live_pods if pod.pending)
        + max(0, current - len(view.live_pods)),
        "desired_replicas": desired,
        "profile": profile,
        "completion_rate": completion_rate,
        "scale_events": events,
        "replicas": [
            replica_json(view, pod, now)
            for pod in view.pods
            if pod.name not in excluded
        ],
    }


def state_json(
    model: InferenceModel,
    views: list[VariantView],
    desired: dict[int, int],
    free: FreeGpus,
    now: datetime,
    extra_excluded: frozenset[str] = frozenset(),
    history: ModelHistory | None = None,
) -> dict[str, Any]:
    """Build the optimizer state of one model.

    `gpus_available` is the cycle's free GPUs of each type, None when unknown.
    `demand` is sent only when `history` carries a known demand; without
    it `wva` uses its saturation rules.
    """
    accelerators = {
        view.variant.accelerator.pk: view.variant.accelerator for view in views
    }
    service_class = model.service_class
    demand: dict[str, Any] = {}
    if history is not None and history.demand.known:
        demand[model.name] = history.demand.state_json()
    return {
        "policy": Policy.WVA.value,
        "now_s": now.timestamp(),
        "demand": demand,
        "models": [
            {
                "name": model.name,
                "kv_cache_threshold": model.kv_cache_threshold,
                "queue_length_threshold": model.queue_length_threshold,
                "kv_spare_trigger": model.kv_spare_trigger,
                "queue_spare_trigger": model.queue_spare_trigger,
            }
        ],
        "accelerators": [
            {
                "name": accelerator.name,
                "usd_per_gpu_hour": accelerator.usd_per_gpu_hour,
                "gpus_available": free.get(pk),
                "power_w": {
                    "idle": accelerator.power_idle_w,
                    "mid": accelerator.power_mid_w,
                    "full": accelerator.power_full_w,
                },
            }
            for pk, accelerator in sorted(accelerators.items())
        ],
        "service_classes": [
            {
                "name": service_class.name,
                "priority": service_class.priority,
                "ttft_ms": service_class.ttft_ms,
                "itl_ms": service_class.itl_ms,
            }
        ],
        "variants": [
            variant_json(
                view,
                desired.get(view.variant.pk),
                frozenset(view.not_capacity) | extra_excluded,
                now,
                history,
            )
            for view in views
        ],
    }


def model_summary(model: InferenceModel, result: WvaResult) -> dict[str, Any]:
    """Summarise the model's outcome for the Decision rows and the cycle outputs."""
    reasons: list[str] = []
    for decision in result.decisions:
        for code in decision.reasons:
            if code not in reasons:
                reasons.append(code)
    summary: dict[str, Any] = dict(result.models.get(model.name, {}))
    summary.update(
        policy=Policy.WVA.value,
        solver=result.solver,
        success=result.success,
        status=result.status,
        solver_message=result.message,
        unserved_rps=result.unserved.get(model.name),
        reasons=reasons,
    )
    return summary


def variant_decision(decision: WvaDecision, summary: dict[str, Any]) -> VariantDecision:
    inputs = dict(decision.inputs)
    if "demand" in summary:
        inputs["demand"] = summary["demand"]
    return VariantDecision(
        target=int(decision.target_replicas),
        reasons=list(decision.reasons),
        bound_by=decision.bound_by,
        victim_pod=decision.victim_pod or "",
        message=decision.message,
        analysis={
            "policy": Policy.WVA.value,
            "solver": summary["solver"],
            "model": summary,
            "inputs": inputs,
            "victim_pods": list(decision.victim_pods),
        },
    )


def hold_reductions_on_missing_data(
    views: list[VariantView], decided: dict[int, VariantDecision]
) -> None:
    """Keep every variant of the model from shrinking while a replica has no sample.

    The policy holds only the variant with the missing sample, but that
    replica's load is unknown, so removing capacity elsewhere in the model
    is not safe either. The model's demand is then unknown as well.
    """
    missing = [name for view in views for name in view.invalid_pods()]
    if not missing:
        return
    reason = "missing_metrics:" + ",".join(missing)
    for view in views:
        decision = decided[view.variant.pk]
        if view.current is None or decision.target >= view.current:
            continue
        decision.target = view.current
        decision.victim_pod = ""
        decision.bound_by = "missing_data"
        if reason not in decision.reasons:
            decision.reasons.append(reason)
        decision.message = f"no reduction while {', '.join(missing)} reports no metrics"


def analyse_model_wva(
    model: InferenceModel,
    views: list[VariantView],
    desired: dict[int, int],
    free: FreeGpus,
    now: datetime,
    extra_excluded: frozenset[str] = frozenset(),
    gateway_rates: Mapping[str, float] | None = None,
) -> tuple[dict[str, Any], dict[int, VariantDecision]]:
    """Run `wva` over all variants of one model whose workloads were all read.

    Pods in `extra_excluded` are left out like pods that are not capacity.
    The model's demand (with `gateway_rates`, the gateway's request rate by
    model name), recent scale events and learned compute bounds are read
    first (`model_history`). While a ready replica has no valid sample,
    no variant of the model is reduced. Raises `optimizer.state.InputError`
    when the catalogue yields an invalid state. The cycle then keeps that
    model's counts, with the error as reason.
    """
    history = model_history(model, views, now, gateway_rates)
    document = state_json(model, views, desired, free, now, extra_excluded, history)
    result = decide_wva(parse_state(document))
    summary = model_summary(model, result)
    summary["demand"] = history.demand.as_json()
    by_name = {decision.variant: decision for decision in result.decisions}
    decided = {
        view.variant.pk: variant_decision(by_name[view.variant.name], summary)
        for view in views
    }
    hold_reductions_on_missing_data(views, decided)
    logger.debug(
        "model %s: wva decided %d variants (solver %s)",
        model.name,
        len(decided),
        result.solver,
    )
    return summary, decided
