"""Run the product's own policy `wva` on one model of the control cycle.

The cycle's views become the optimizer's JSON state (the schema of
`optimizer.state`). `decide_wva` decides every variant of the model, and
its decisions become the same VariantDecision objects that the `wva-v1`
path produces, so storing, proposals, modes, conditions and the HPA
counterfactual run unchanged.

The state leaves out what the cycle handles itself: the HPA counterfactual
(no `hpa` object), Pending timeouts (no `pending_s`, `cycle_safety` and
`cycle_placement` move those replicas) and crash-looping or silent
replicas, which are left out like in `wva-v1`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings

from optimizer.policy_wva import WvaDecision, WvaResult, decide_wva
from optimizer.state import parse_state
from wva_web.catalog.models import InferenceModel, Policy, Variant
from wva_web.control.cycle_placement import FreeGpus
from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.integrations import kube, metrics

logger = logging.getLogger(__name__)

REPLICA_FIELDS = ("kv_cache_usage", "num_requests_waiting", "num_requests_running")


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
) -> dict[str, Any]:
    """Build one `variants[]` entry; pods that are not capacity are left out."""
    variant = view.variant
    current = int(view.current or 0)
    # The effective max: a variant that may not grow enters with max = current.
    maximum = view.max_replicas
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
        "profile": profile_json(variant),
        # NOTE: no scale_events yet, so the stabilisation window after an
        # increase does not hold reductions in the cycle.
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
) -> dict[str, Any]:
    """Build the optimizer state of one model.

    `gpus_available` is the cycle's free GPUs of each type, None when unknown.
    No `demand` is sent: the cycle reads token counters but no request
    counts, so arrival rate and token lengths are unknown and `wva` uses
    its saturation rules.
    """
    accelerators = {
        view.variant.accelerator.pk: view.variant.accelerator for view in views
    }
    service_class = model.service_class
    return {
        "policy": Policy.WVA.value,
        "now_s": now.timestamp(),
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
            "inputs": dict(decision.inputs),
            "victim_pods": list(decision.victim_pods),
        },
    )


def analyse_model_wva(
    model: InferenceModel,
    views: list[VariantView],
    desired: dict[int, int],
    free: FreeGpus,
    now: datetime,
    extra_excluded: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], dict[int, VariantDecision]]:
    """Run `wva` over all variants of one model whose workloads were all read.

    Pods in `extra_excluded` are left out like pods that are not capacity.
    Raises `optimizer.state.InputError` when the catalogue yields an invalid
    state. The cycle then keeps that model's counts, with the error as reason.
    """
    document = state_json(model, views, desired, free, now, extra_excluded)
    result = decide_wva(parse_state(document))
    summary = model_summary(model, result)
    by_name = {decision.variant: decision for decision in result.decisions}
    decided = {
        view.variant.pk: variant_decision(by_name[view.variant.name], summary)
        for view in views
    }
    logger.debug(
        "model %s: wva decided %d variants (solver %s)",
        model.name,
        len(decided),
        result.solver,
    )
    return summary, decided
