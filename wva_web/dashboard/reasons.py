"""Plain-language texts of reason codes, shown beside the code on the pages.

The code stays the key that the database, the API and the log lines share.
The text only helps a reader, so an unknown code gets no text and the page
shows the code alone. A code may carry a detail after a colon, e.g.
`missing_metrics:pod-a,pod-b` or `no_free_gpu:L4`. Codes are looked up in
full first, then by the part before the first colon.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# One code of a list joined by ", ": lowercase words, then an optional detail.
CODE_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?::\S*)?")

# Full codes, including those whose part after the colon is fixed.
FULL_CODES = {
    "scale_up:spare_kv": "scale up: mean spare KV-cache below trigger",
    "scale_up:avg_spare_kv": "scale up: mean spare KV-cache below trigger",
    "scale_up:spare_queue": "scale up: mean spare queue below trigger",
    "scale_up:slo": "scale up: latency targets need more replicas",
    "scale_down:safe": "scale down: the remaining replicas can absorb the load",
    "scale_down:pending_first": (
        "scale down: the load dropped while replicas wait for a node, "
        "so a replica without a node is removed first"
    ),
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
    "scale_down:no_spare_tokens": (
        "no scale-down: spare token capacity is less than one replica"
    ),
    "scale_up:hpa": "scale up: an HPA metric is above its target",
    "scale_down:hpa": "scale down: the HPA metrics are below their targets",
    "scale_up:saturated_growth": (
        "scale up: every replica is saturated and the measured demand at least "
        "fills the ready capacity, which hides any larger demand, so the ready "
        "capacity doubles"
    ),
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
    "no_demand": "no demand estimate: request rate or token lengths unknown",
    "slo_unreachable": "no batch size meets the latency targets on this variant",
    "allocation_failed": "the allocation found no solution",
    "above_max": "above the variant's max replicas: coming down step by step",
    "missing_signal": (
        "no valid sample of this metric this cycle: the replica does not "
        "export it, or the metrics backend did not return it"
    ),
    "non_finite": "a replica reports a value that is not a number",
    "out_of_range": "a replica reports a value out of range",
    "stale_metrics": "samples older than the allowed age",
    "invalid_metric": "HPA metric without a valid value",
    "direction_flipped": "HPA: counting replicas without metrics reverses the change",
    "scaling_disabled": "HPA scaling disabled: the workload has 0 replicas",
    "stabilization": "bound by the scale-down stabilization window",
    "transition": "an earlier change has not landed yet",
    "invalid_input": "the catalogue gives the policy an invalid input",
    "no_hpa_metrics": "policy hpa: the variant has no HPA metrics",
    "scale_up": "scale up",
    "scale_down": "scale down",
    "dead_band": (
        "held: live capacity lies between the scale-up and scale-down headroom"
    ),
    "make_before_break": "ready replicas kept until the new replicas are ready",
    "no_replicas": "the model has no replicas",
    "metrics_unavailable": "every metrics scrape failed in this cycle",
    "counter_reset": "a replica's request counters went back, e.g. after a restart",
    "missing_counters": "a ready replica reports no request counters",
    "no_previous_sample": "no earlier sample of a ready replica to measure demand",
    "implausible_counters": (
        "a replica's request or token counters moved more than one engine can "
        "serve, so the demand is unknown"
    ),
    "interval_too_short": "too little time since the previous sample",
    "no_pods_with_counters": "no replica reports request counters",
    "missing": "a ready replica returned no metrics",
    "stale": "a replica's metrics are older than the allowed age",
    "not_numeric": "a replica reports a value that is not numeric",
    "kv_metric_not_found": "a replica exports no KV-cache usage metric",
}


def reason_text(code: str) -> str:
    """Return the text of a reason code, e.g. "no free GPU", or "" if unknown.

    The detail after the colon is left out because the page shows the code.
    """
    if code in FULL_CODES:
        return FULL_CODES[code]
    head, _, detail = code.partition(":")
    return PREFIX_CODES.get(head, "")


def replica_count(detail: str) -> int:
    """Count the replicas a code's detail names.

    The detail is a list of pod names ("pod-a,pod-b") or, for replicas
    without a known pod, "variant=count" items ("l4=2").
    """
    count = 0
    for item in filter(None, detail.split(",")):
        _, equals, number = item.rpartition("=")
        count += int(number) if equals and number.isdigit() else 1
    return count


def replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"


def plain_reasons(codes: Iterable[str]) -> str:
    """Describe a list of reason codes in plain words, without pod names.

    Example: ["saturated:pod-a,pod-b", "pending:pod-c", "transition_pending"]
    reads "2 replicas saturated; waiting for 1 new replica to start; an
    earlier change has not landed yet". Codes of one kind that name replicas
    are added up, and a code without a text is shown as it is.
    """
    counted = {"saturated": 0, "pending": 0, "missing_metrics": 0, "missing_samples": 0}
    order: list[str] = []
    for code in codes:
        head, colon, detail = code.partition(":")
        if head in counted and colon and code not in FULL_CODES:
            counted[head] += replica_count(detail)
            key = head
        else:
            key = reason_text(code) or code
        if key not in order:
            order.append(key)
    texts = {
        "saturated": f"{replicas(counted['saturated'])} saturated",
        "pending": (
            f"waiting for {counted['pending']} new "
            f"{'replica' if counted['pending'] == 1 else 'replicas'} to start"
        ),
        "missing_metrics": f"{replicas(counted['missing_metrics'])} without metrics",
        "missing_samples": f"{replicas(counted['missing_samples'])} without samples",
    }
    return "; ".join(texts.get(key, key) for key in order)


def split_reason_list(message: str) -> list[str] | None:
    """Split a message of reason codes joined by ", " into the codes.

    Returns None when some part is not a code, so a sentence stays as it is.
    """
    parts = [part.strip() for part in message.split(", ")]
    if not parts or not all(CODE_PATTERN.fullmatch(part) for part in parts):
        return None
    return parts
