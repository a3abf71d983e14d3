"""The Kubernetes HPA algorithm in the control cycle: counterfactual and policy.

Every variant with `hpa_metrics` gets the HPA counterfactual: what a stock
HPA on those per-pod metrics would set now. When a model selects the
policy `hpa`, the same computation also sets each variant's target. Both
read one stabilisation history, the recommendations stored in the
analysis of the variant's last decision, and apply the HPA's tolerance,
missing-metric rules and rate limits (`optimizer.hpa`).

Under the policy, the cycle's safety rules still run afterwards: pins,
no reduction on missing data, stuck queues, GPU and growth limits. The
policy reads the effective max replicas of the cycle's limits, while the
counterfactual reads the catalogue's min and max. A variant without
`hpa_metrics` keeps its count with the reason `no_hpa_metrics`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from optimizer import hpa as hpa_policy
from wva_web.catalog.models import Policy, Variant
from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.control.models import Decision

# HPA recommendations older than this are dropped from the stored history.
HPA_DOWNSCALE_WINDOW_S = 300.0
HPA_METRIC_FIELDS = {
    "num_requests_waiting": "num_requests_waiting",
    "num_requests_running": "num_requests_running",
    "kv_cache_usage": "kv_cache_usage",
    "kv_cache_usage_perc": "kv_cache_usage",
}
# Reason codes of the policy `hpa`.
NO_HPA_METRICS = "no_hpa_metrics"
SCALE_UP = "scale_up:hpa"
SCALE_DOWN = "scale_down:hpa"


def previous_hpa_history(variant: Variant, now: datetime) -> list[list[Any]]:
    """Recommendations of the HPA counterfactual kept by the variant's last decision."""
    last = (
        Decision.objects.filter(variant=variant)
        .order_by("-cycle__started_at", "-pk")
        .values_list("analysis", flat=True)
        .first()
    )
    if not last:
        return []
    stored = (last.get("hpa") or {}).get("recommendations") or []
    cutoff = now.timestamp() - HPA_DOWNSCALE_WINDOW_S
    return [[float(at), int(replicas)] for at, replicas in stored if float(at) > cutoff]


def hpa_metric(
    view: VariantView,
    spec: dict[str, Any],
    excluded: frozenset[str] = frozenset(),
) -> hpa_policy.HpaMetric:
    """Build one per-pod HPA metric; a pod without a valid value maps to None.

    Pods in `excluded` are left out.
    """
    name = str(spec.get("metric", ""))
    target = float(spec.get("target_average_value") or 0.0)
    attribute = HPA_METRIC_FIELDS.get(name)
    values: dict[str, float | None] = {}
    for pod in view.live_pods:
        if pod.name in excluded:
            continue
        sample = view.samples.get(pod.name)
        value = None
        if (
            attribute
            and sample is not None
            and sample.field_status.get(attribute) == "ok"
        ):
            value = getattr(sample, attribute)
        values[pod.name] = value
    valid = attribute is not None and target > 0
    return hpa_policy.HpaMetric(name, "pods", target, pod_values=values, valid=valid)


def hpa_input(
    view: VariantView,
    history: list[list[Any]],
    now: datetime,
    bounds: tuple[int, int],
    excluded: frozenset[str] = frozenset(),
) -> hpa_policy.HpaInput:
    """Build the HPA's input from the view; `bounds` is (min, max) replicas."""
    variant = view.variant
    return hpa_policy.HpaInput(
        current_replicas=int(view.current or 0),
        min_replicas=bounds[0],
        max_replicas=bounds[1],
        pods=tuple(
            hpa_policy.HpaPod(
                pod.name,
                phase=pod.phase,
                ready=pod.ready,
                terminating=pod.terminating,
            )
            for pod in view.pods
            if pod.name not in excluded
        ),
        metrics=tuple(
            hpa_metric(view, spec, excluded) for spec in variant.hpa_metrics or []
        ),
        now_s=now.timestamp(),
        recommendations=tuple((float(at), int(n)) for at, n in history),
    )


def hpa_counterfactual(
    view: VariantView, history: list[list[Any]], now: datetime
) -> tuple[int | None, list[str], list[list[Any]]]:
    """Compute what an HPA on `hpa_metrics` would set now; None when unknown."""
    if view.current is None:
        return None, ["kube_error"], history
    variant = view.variant
    specs = variant.hpa_metrics or []
    if not specs:
        return None, [NO_HPA_METRICS], history
    bounds = (variant.min_replicas, variant.max_replicas)
    result = hpa_policy.hpa_desired_replicas(hpa_input(view, history, now, bounds))
    kept = [[float(at), int(n)] for at, n in result.recommendations]
    return result.desired_replicas, list(result.reasons), kept


def metric_inputs(
    view: VariantView, result: hpa_policy.HpaResult
) -> list[dict[str, Any]]:
    """List each metric's target, average per pod, ratio and proposal."""
    targets = {
        str(spec.get("metric", "")): spec.get("target_average_value")
        for spec in view.variant.hpa_metrics or []
    }
    return [
        {
            "metric": item.name,
            "target": targets.get(item.name),
            "average": item.average,
            "ratio": item.ratio,
            "proposal": item.proposal,
        }
        for item in result.metrics
    ]


def metric_message(inputs: list[dict[str, Any]]) -> str:
    """Describe the metrics, e.g. "num_requests_waiting 8 per pod, target 4"."""
    parts = [
        f"{item['metric']} {item['average']:g} per pod, target {item['target']:g}"
        for item in inputs
        if item["average"] is not None and item["target"] is not None
    ]
    return "; ".join(parts)


def decide_hpa(
    view: VariantView, now: datetime, excluded: frozenset[str] = frozenset()
) -> VariantDecision:
    """Set the target of a variant whose workload was read to the HPA's desired count.

    The HPA reads the cycle's effective max replicas, so a growth limit
    caps it. Pods in `excluded` are left out. Without `hpa_metrics`, or
    without a valid metric, the variant keeps its count, bound by
    `missing_data`. The victim of a reduction is chosen by the caller.
    """
    variant = view.variant
    current = int(view.current or 0)
    analysis: dict[str, Any] = {"policy": Policy.HPA.value}
    if not variant.hpa_metrics:
        message = (
            f"policy hpa: variant {variant.name} has no hpa_metrics, "
            f"so it keeps {current} replicas"
        )
        return VariantDecision(
            target=current,
            reasons=[NO_HPA_METRICS],
            bound_by="missing_data",
            message=message,
            analysis=analysis,
        )
    maximum = view.max_replicas
    bounds = (min(variant.min_replicas, maximum), maximum)
    history = previous_hpa_history(variant, now)
    result = hpa_policy.hpa_desired_replicas(
        hpa_input(view, history, now, bounds, excluded)
    )
    inputs = metric_inputs(view, result)
    analysis["inputs"] = {"hpa_metrics": inputs}
    reasons = list(result.reasons)
    if result.desired_replicas is None:
        message = f"policy hpa: no valid HPA metric, so it keeps {current} replicas"
        return VariantDecision(
            target=current,
            reasons=reasons,
            bound_by="missing_data",
            message=message,
            analysis=analysis,
        )
    target = result.desired_replicas
    if target > current:
        reasons.append(SCALE_UP)
    elif target < current:
        reasons.append(SCALE_DOWN)
    return VariantDecision(
        target=target,
        reasons=reasons,
        bound_by=result.bound_by,
        message=metric_message(inputs),
        analysis=analysis,
    )
