"""Replica-level safety rules of the control cycle, independent of the policy.

Each rule flags pods of a variant before the analysis runs:

- crash loop: a pod in CrashLoopBackOff, or with 3 or more restarts and
  not Ready, is neither capacity nor idle;
- silent replica: a Running pod that is not Ready and has had no valid
  sample for longer than `WVA_STALE_AFTER_S` is not capacity, and
  reductions of its variant need an approval;
- stuck queue: a pod with waiting requests, none running and an unchanged
  `vllm:generation_tokens_total` for `WVA_STUCK_QUEUE_S` is flagged;
- pending timeout: a pod Pending for longer than `WVA_PENDING_TIMEOUT_S`
  is unschedulable;
- short grace period: a pod template with `terminationGracePeriodSeconds`
  below 300 gets a warning and stays allowed in mode auto.

The KV-cache and queue values fed to the analysis are one-minute peaks: the
max over this scrape and the pod's stored samples of the last 60 s, taken
only where this scrape is valid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max

from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.control.models import MetricSample
from wva_web.integrations import kube, metrics

logger = logging.getLogger(__name__)

# Reason codes, the same on the Decision, the VariantState condition and the log.
SHORT_GRACE_PERIOD = "short_grace_period"
UNSCHEDULABLE = "unschedulable"
CRASH_LOOP = "crash_loop"
SILENT_REPLICA = "approval_required:silent_replica"
STUCK_QUEUE = "queue_without_progress"
INVENTORY_UNKNOWN = "inventory_unknown"
GPU_BUDGET = "gpu_budget"
# A grace period below this cuts off long generations when a replica leaves.
MIN_GRACE_PERIOD_S = 300
HISTORY_FIELDS = (
    "kv_cache_usage",
    "num_requests_waiting",
    "num_requests_running",
    "generation_tokens_total",
)


def no_free_gpu(accelerator: str) -> str:
    return f"no_free_gpu:{accelerator}"


@dataclass(frozen=True)
class SafetySettings:
    """Timeouts in seconds and the GPU limiter switch, read once per cycle."""

    pending_timeout_s: float
    gpu_limiter: bool
    stale_after_s: float
    stuck_queue_s: float

    @classmethod
    def from_settings(cls) -> SafetySettings:
        return cls(
            pending_timeout_s=float(settings.WVA_PENDING_TIMEOUT_S),
            gpu_limiter=bool(settings.WVA_GPU_LIMITER),
            stale_after_s=float(settings.WVA_STALE_AFTER_S),
            stuck_queue_s=float(settings.WVA_STUCK_QUEUE_S),
        )


@dataclass
class History:
    """Stored samples of the cycle's pods, newest first, and their last valid time."""

    rows: dict[tuple[int, str], list[dict[str, Any]]] = field(default_factory=dict)
    last_valid: dict[tuple[int, str], datetime] = field(default_factory=dict)


def read_history(
    views: Iterable[VariantView], now: datetime, rules: SafetySettings
) -> History:
    """Read earlier MetricSample rows of the live pods in two queries."""
    views = list(views)
    variant_ids = [view.variant.pk for view in views]
    pods = sorted({pod.name for view in views for pod in view.live_pods})
    history = History()
    if not pods:
        return history
    window_s = max(metrics.PEAK_WINDOW_S, 2.0 * rules.stuck_queue_s)
    rows = (
        MetricSample.objects.filter(
            variant_id__in=variant_ids,
            pod__in=pods,
            sampled_at__gt=now - timedelta(seconds=window_s),
            sampled_at__lte=now,
        )
        .order_by("-sampled_at", "-pk")
        .values("variant_id", "pod", "sampled_at", *HISTORY_FIELDS)
    )
    for row in rows:
        history.rows.setdefault((row["variant_id"], row["pod"]), []).append(row)
    last_valid = (
        MetricSample.objects.filter(
            variant_id__in=variant_ids,
            pod__in=pods,
            status=metrics.OK,
            sampled_at__lte=now,
        )
        .values("variant_id", "pod")
        .annotate(last=Max("sampled_at"))
    )
    for row in last_valid:
        history.last_valid[(row["variant_id"], row["pod"])] = row["last"]
    return history


def inspect_view(
    view: VariantView, history: History, now: datetime, rules: SafetySettings
) -> None:
    """Set the view's one-minute peaks and its flagged pods."""
    variant_id = view.variant.pk
    peak_cutoff = now - timedelta(seconds=metrics.PEAK_WINDOW_S)
    for pod in view.live_pods:
        rows = history.rows.get((variant_id, pod.name), [])
        sample = view.samples.get(pod.name)
        if sample is not None:
            recent = [row for row in rows if row["sampled_at"] > peak_cutoff]
            view.peaks[pod.name] = metrics.one_minute_peak(sample, recent)
        if pod.pending:
            if _seconds_since(pod.created_at, now) > rules.pending_timeout_s:
                view.timed_out.append(pod.name)
            continue
        if pod.crash_looping:
            view.crash_looping.append(pod.name)
            continue
        last_valid = history.last_valid.get((variant_id, pod.name), pod.created_at)
        if _is_silent(pod.ready, sample, last_valid, now, rules.stale_after_s):
            view.silent.append(pod.name)
            continue
        if sample is not None and _stuck_for(sample, rows, now) >= rules.stuck_queue_s:
            view.stuck.append(pod.name)


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    """Seconds from `moment` to now; 0 when the moment is unknown."""
    if moment is None:
        return 0.0
    return (now - moment).total_seconds()


def _is_silent(
    ready: bool,
    sample: metrics.PodMetrics | None,
    last_valid: datetime | None,
    now: datetime,
    stale_after_s: float,
) -> bool:
    if ready or (sample is not None and sample.reporting):
        return False
    return last_valid is not None and _seconds_since(last_valid, now) > stale_after_s


def _stuck_for(
    sample: metrics.PodMetrics, rows: list[dict[str, Any]], now: datetime
) -> float:
    """Seconds the pod has had waiting requests, none running and no new tokens."""
    if any(sample.field_status.get(name) != metrics.OK for name in HISTORY_FIELDS[1:]):
        return 0.0
    waiting = sample.num_requests_waiting or 0.0
    if waiting <= 0 or sample.num_requests_running != 0:
        return 0.0
    tokens = sample.generation_tokens_total
    since = now
    for row in rows:
        unchanged = (
            (row["num_requests_waiting"] or 0.0) > 0
            and row["num_requests_running"] == 0
            and row["generation_tokens_total"] == tokens
        )
        if not unchanged:
            break
        since = row["sampled_at"]
    return (now - since).total_seconds()


def add_reason(decision: VariantDecision, code: str) -> None:
    if code not in decision.reasons:
        decision.reasons.append(code)


def add_condition(
    view: VariantView,
    decision: VariantDecision,
    kind: str,
    code: str,
    message: str,
    **extra: Any,
) -> None:
    """Record a failed safety condition on the decision and log it once."""
    status = extra.pop("status", False)
    decision.conditions.append(
        {"type": kind, "status": status, "reason": code, "message": message, **extra}
    )
    add_reason(decision, code)
    logger.warning("variant %s: %s: %s", view.variant.name, code, message)


def name_ordinal_victim(view: VariantView, decision: VariantDecision) -> None:
    """Name the pod a StatefulSet or LeaderWorkerSet really removes on a reduction.

    Those controllers remove the highest ordinal first and ignore
    pod-deletion-cost, so the policy's choice of victim cannot hold. The
    decision names the highest ordinal instead and keeps the policy's
    choice in its analysis.
    """
    current = view.current
    if view.variant.kind not in kube.ORDERED_KINDS or current is None:
        return
    if decision.target >= current:
        return
    victims = kube.ordinal_victims(view.pods, current - decision.target)
    chosen = decision.victim_pod
    decision.victim_pod = victims[0] if victims else ""
    decision.analysis["victim_pods"] = victims
    if chosen and chosen != decision.victim_pod:
        decision.analysis["policy_victim"] = chosen
        logger.info(
            "variant %s: %s removes %s first, not %s, the policy's choice",
            view.variant.name,
            view.variant.kind,
            decision.victim_pod or "no pod",
            chosen,
        )


def flag_view(view: VariantView, decision: VariantDecision) -> list[dict[str, Any]]:
    """Add the conditions and reason codes of the view's flags; return its alerts."""
    alerts: list[dict[str, Any]] = []
    grace = view.grace_period_s
    if grace is not None and grace < MIN_GRACE_PERIOD_S:
        message = (
            f"terminationGracePeriodSeconds is {grace} s, shorter than the longest "
            f"expected generation; set at least {MIN_GRACE_PERIOD_S} s with a "
            "pre-stop hook that drains the replica"
        )
        add_condition(
            view,
            decision,
            "GracePeriodSufficient",
            SHORT_GRACE_PERIOD,
            message,
            grace_period_s=grace,
        )
    if view.crash_looping:
        ready = len(view.ready_pods)
        names = ", ".join(view.crash_looping)
        message = f"{ready} ready, {len(view.crash_looping)} CrashLoopBackOff: {names}"
        add_condition(view, decision, "ReplicasHealthy", CRASH_LOOP, message)
    if view.silent:
        message = (
            f"{', '.join(view.silent)} not Ready and without valid metrics for more "
            "than the stale limit: not counted as capacity; reductions need an approval"
        )
        add_condition(view, decision, "ReplicasReporting", SILENT_REPLICA, message)
    if view.stuck:
        message = (
            f"{len(view.stuck)} replicas with waiting requests, none running and no "
            f"new tokens: {', '.join(view.stuck)}; reductions need an approval"
        )
        add_condition(view, decision, "QueuesProgressing", STUCK_QUEUE, message)
        alerts.append(
            {"reason": STUCK_QUEUE, "variant": view.variant.name, "pods": view.stuck}
        )
    if view.timed_out:
        message = f"{', '.join(view.timed_out)} Pending past the timeout"
        add_condition(view, decision, "Schedulable", UNSCHEDULABLE, message)
    return alerts
