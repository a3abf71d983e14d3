"""Plain-language texts of reason codes, shown beside the code on the pages.

The code stays the key that the database, the API and the log lines share.
The text only helps a reader, so an unknown code gets no text and the page
shows the code alone. A code may carry a detail after a colon, e.g.
`missing_metrics:pod-a,pod-b` or `no_free_gpu:L4`. Codes are looked up in
full first, then by the part before the first colon.
"""

from __future__ import annotations

# Full codes, including those whose part after the colon is fixed.
FULL_CODES = {
    "scale_up:spare_kv": "scale up: mean spare KV-cache below trigger",
    "scale_up:avg_spare_kv": "scale up: mean spare KV-cache below trigger",
    "scale_up:spare_queue": "scale up: mean spare queue below trigger",
    "scale_up:slo": "scale up: latency targets need more replicas",
    "scale_down:safe": "scale down: the remaining replicas can absorb the load",
    "scale_down:unsafe": (
        "no scale-down: the remaining replicas could not absorb the load"
    ),
    "scale_down:too_few_non_saturated": (
        "no scale-down: fewer than 2 replicas below saturation"
    ),
    "scale_down:spare_capacity": "scale down: spare capacity above the headroom",
    "hold:invalid_metric_on_scale_down": (
        "hold: a metric is invalid and the valid ones point down"
    ),
    "approval_required:silent_replica": (
        "approval required: a replica reports no metrics"
    ),
    "no_demand:token_lengths": "no demand estimate: token lengths unknown",
}
# Codes by the part before the first colon, and codes without a colon.
PREFIX_CODES = {
    "advisory": "mode advisory: recorded only",
    "capped_by_max": "capped at the variant's max replicas",
    "capped_by_min": "raised to the variant's min replicas",
    "crash_loop": "a replica keeps crashing",
    "gpu_budget": "limited by free GPUs",
    "hpa_conflict": "an HPA also scales this workload",
    "insufficient_data": "not enough data to decide",
    "inventory_unknown": "GPU inventory unknown",
    "kube_error": "Kubernetes API call failed",
    "manual_request": "requested by a person",
    "max_replicas": "bound by max replicas",
    "min_replicas": "bound by min replicas",
    "missing_data": "metrics missing",
    "missing_metrics": "replicas without metrics",
    "missing_samples": "replicas without samples",
    "no_candidate": "no variant can take the change",
    "no_change": "no change",
    "no_free_gpu": "no free GPU",
    "no_metrics": "no metrics",
    "no_profile": "no performance profile",
    "no_service_class": "no service class",
    "no_valid_metric": "no valid metric",
    "pending": "replicas still starting",
    "pinned": "pinned by an override",
    "proposal": "HPA proposal by this metric",
    "metrics_ok": "every replica reports metrics",
    "ready": "able to scale",
    "within_bounds": "within min and max replicas",
    "queue_without_progress": "requests wait while nothing runs",
    "raised_to_min": "raised to the variant's min replicas",
    "saturated": "saturated replicas",
    "scale_down_limit": "limited by the scale-down rate",
    "scale_up_limit": "limited by the scale-up rate",
    "short_grace_period": "termination grace period too short",
    "sized_by_batch_slots": "sized by batch slots",
    "sized_by_kv_tokens": "sized by KV-cache tokens",
    "sized_by_slo": "sized by latency targets",
    "stabilized": "held by the scale-down stabilization window",
    "transition_pending": "an earlier change has not landed yet",
    "unschedulable": "replicas cannot be scheduled",
    "within_tolerance": "within the HPA's 10% tolerance",
    "kube_unavailable": "Kubernetes API unreachable: last desired count held",
    "apply_timeout": "approved but not applied before the deadline",
    "actuator_unavailable": "Kubernetes API failed on every retry",
    "database_unavailable": "database locked on every retry",
    "rejected_recently": "an approver rejected this direction recently",
    "unschedulable_recently": "replicas could not be scheduled recently",
    "capped_by_hpa_max": "capped at the HPA's maxReplicas",
    "hpa_max_replicas": "bound by the HPA's maxReplicas",
    "base_changed": "the live replica count changed before applying",
    "mode_advisory": "the variant became advisory before applying",
}


def reason_text(code: str) -> str:
    """Return the text of a reason code, e.g. "no free GPU", or "" if unknown.

    The detail after the colon is left out because the page shows the code.
    """
    if code in FULL_CODES:
        return FULL_CODES[code]
    head, _, detail = code.partition(":")
    return PREFIX_CODES.get(head, "")
