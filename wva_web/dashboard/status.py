"""Plain-language status lines of a variant, built from its state and last decision.

The variant list, the variant page and the live JSON show the same lines, so
a degraded variant reads as degraded on every surface.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Max
from django.utils import timezone

from wva_web.catalog.models import Variant
from wva_web.control.models import ControlCycle, Decision, VariantState
from wva_web.dashboard import reasons
from wva_web.integrations import leader, prometheus
from wva_web.integrations.kube import DESIRED_METRIC

logger = logging.getLogger(__name__)

# Grace period suggested for replicas that may hold long generations.
SUGGESTED_GRACE_PERIOD_S = 300
# Reason codes of the condition that flags a short termination grace period.
BOUNDS = ("max_replicas", "min_replicas", "gpu_budget")
SHORT_GRACE_REASONS = ("short_grace_period", "ShortGracePeriod", "GracePeriodTooShort")
# Read-back of the published desired count through Prometheus: the response is
# cached this many seconds, each query may take this long, and a count
# published less than READBACK_GRACE_S ago is not compared yet.
READBACK_CACHE_S = 15.0
READBACK_TIMEOUT_S = 2.0
READBACK_GRACE_S = 120.0


@dataclass(frozen=True)
class StatusLine:
    """One line on a variant card: severity (warning or info), text and reason code.

    `detail` contains the raw reason codes behind a plain-words text, which
    the pages show in a collapsed details element.
    """

    level: str
    text: str
    reason: str = ""
    detail: str = ""


def hhmm(value: Any) -> str:
    """Format a datetime or ISO string as HH:MM in the current time zone."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, dt.datetime):
        return ""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime("%H:%M")


def condition(state: VariantState | None, kind: str) -> dict[str, Any] | None:
    if state is None or not isinstance(state.conditions, list):
        return None
    for item in state.conditions:
        if isinstance(item, dict) and item.get("type") == kind:
            return item
    return None


def is_false(item: dict[str, Any] | None) -> bool:
    return item is not None and str(item.get("status", "")).lower() == "false"


def is_true(item: dict[str, Any] | None) -> bool:
    return item is not None and str(item.get("status", "")).lower() == "true"


def degraded_line(
    state: VariantState | None, samples_total: int, samples_bad: int
) -> StatusLine | None:
    """Describe replicas without metrics, e.g. "Degraded: 1 of 4 replicas ..."."""
    metrics = condition(state, "MetricsAvailable")
    if state is None or not (state.degraded or samples_bad or is_false(metrics)):
        return None
    reason = str(metrics.get("reason", "")) if metrics else ""
    since = hhmm(metrics.get("since")) if metrics else ""
    total = (
        state.current_replicas if state.current_replicas is not None else samples_total
    )
    if samples_bad:
        text = (
            f"Degraded: {samples_bad} of {unknown_or(total)} replicas without metrics"
        )
    elif metrics and metrics.get("message"):
        text = f"Degraded: {metrics['message']}"
    else:
        text = f"Degraded: {unknown_or(total)} replicas without metrics"
    if since:
        text += f" since {since}"
    return StatusLine("warning", text, reason or "missing_metrics")


def able_line(state: VariantState | None) -> StatusLine | None:
    """Describe why the variant cannot scale now, from its AbleToScale condition.

    A pin has its own line, so the `pinned` reason is left to `pinned_line`.
    """
    able = condition(state, "AbleToScale")
    if state is None or able is None or not is_false(able):
        return None
    reason = str(able.get("reason", ""))
    if reason == "pinned":
        return None
    message = str(able.get("message", "")).strip() or reason
    codes = reasons.split_reason_list(message)
    detail = ""
    if codes is not None:
        detail = message
        message = reasons.plain_reasons(codes)
    text = f"Not able to scale: {message}"
    since = hhmm(able.get("since"))
    if since:
        text += f", since {since}"
    return StatusLine("warning", text, reason, detail)


def starting_line(state: VariantState | None) -> StatusLine | None:
    """Count the replicas still starting: Pending, or Running and not yet Ready."""
    if state is None or not state.pending_replicas:
        return None
    count = state.pending_replicas
    noun = "replica" if count == 1 else "replicas"
    return StatusLine("info", f"{count} {noun} starting", "pending")


def limited_line(
    variant: Variant, state: VariantState | None, decision: Decision | None
) -> StatusLine | None:
    """Describe a target bound by max, min or the GPU budget.

    The decision's message, such as "wants 5, capped at 4 (max)", is used as
    it is. Without one, the line is built from `analysis["wanted_replicas"]`
    and, for the GPU budget, `analysis["free_gpus"]`.
    """
    limited = condition(state, "ScalingLimited")
    bound_by = decision.bound_by if decision is not None else ""
    if not is_true(limited) and bound_by not in BOUNDS:
        return None
    reason = str(limited.get("reason", "")) if limited else ""
    reason = reason or bound_by
    if decision is not None and decision.message and bound_by in BOUNDS:
        text = f"Limited: {decision.message}"
    elif decision is not None and bound_by in BOUNDS:
        text = "Limited: " + bound_text(variant, decision)
    else:
        message = str(limited.get("message", "")) if limited else ""
        text = f"Limited: {message or reason}"
    since = (
        hhmm(limited.get("since")) if limited is not None and is_true(limited) else ""
    )
    if since:
        text += f", since {since}"
    return StatusLine("warning", text, reason)


def bound_text(variant: Variant, decision: Decision) -> str:
    analysis = decision.analysis if isinstance(decision.analysis, dict) else {}
    wanted = analysis.get("wanted_replicas")
    head = f"wants {wanted}, " if wanted is not None else ""
    target = decision.target_replicas
    if decision.bound_by == "max_replicas":
        return f"{head}capped at {target} (max)"
    if decision.bound_by == "min_replicas":
        return f"{head}capped at {target} (min)"
    text = f"{head}capped at {target} by free {variant.accelerator.name} GPUs"
    free = analysis.get("free_gpus")
    if free is not None:
        text += f" ({free} of {unknown_or(variant.accelerator.gpus_available)})"
    return text


def count_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def published_line(state: VariantState | None) -> StatusLine | None:
    """Compare the published desired count with what the actuating HPA reads.

    Example: "Published desired 5 at 12:01; the HPA still sees 4". No line
    appears while the HPA reads the published value.
    NOTE: with the scrape metrics source, the console reads no metrics
    backend back, so the line cannot tell whether the backend or the HPA
    lags. With WVA_METRICS_SOURCE=prometheus, `prometheus_line` reads the
    gauge back from Prometheus.
    """
    if state is None or not state.hpa_name or state.desired_replicas is None:
        return None
    desired = state.desired_replicas
    at = hhmm(state.desired_published_at)
    head = f"Published desired {desired}" + (f" at {at}" if at else "")
    seen = state.hpa_metric_value
    if seen is None:
        wants = unknown_or(state.hpa_desired_replicas)
        text = (
            f"{head}; HPA {state.hpa_name} reports no {DESIRED_METRIC} metric "
            f"and wants {wants} replicas"
        )
        return StatusLine("warning", text, "hpa_metric_missing")
    if abs(seen - desired) < 1e-9:
        return None
    text = f"{head}; the HPA still sees {count_text(seen)}"
    return StatusLine("warning", text, "desired_not_seen")


def stored_desired() -> tuple[dict[tuple[str, str], list[float]] | None, str]:
    """Read `wva_desired_replicas` back from Prometheus, cached for a short time.

    Returns the values by (namespace, variant name) and "", or None and the
    error. One response serves every variant of a page, and a Prometheus that
    does not respond delays at most one page per READBACK_CACHE_S.
    """
    url = settings.WVA_PROMETHEUS_URL
    key = f"wva:prometheus-desired:{url}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    timeout_s = min(float(settings.WVA_PROMETHEUS_TIMEOUT_S), READBACK_TIMEOUT_S)
    try:
        source = prometheus.PrometheusMetricsSource(url, timeout_s, retries=0)
        result: tuple[dict[tuple[str, str], list[float]] | None, str] = (
            source.read_desired_replicas(),
            "",
        )
    except (ValueError, prometheus.PrometheusQueryError) as exc:
        logger.warning("reading %s back from %s failed: %s", DESIRED_METRIC, url, exc)
        result = (None, str(exc))
    cache.set(key, result, READBACK_CACHE_S)
    return result


def prometheus_line(variant: Variant, state: VariantState | None) -> StatusLine | None:
    """Compare the published desired count with the value Prometheus stores.

    Only with WVA_METRICS_SOURCE=prometheus, and only once the count has been
    published for READBACK_GRACE_S, because Prometheus scrapes /metrics at
    its own interval.
    """
    if settings.WVA_METRICS_SOURCE != "prometheus":
        return None
    if state is None or state.desired_replicas is None:
        return None
    published_at = state.desired_published_at
    if published_at is not None:
        age_s = (timezone.now() - published_at).total_seconds()
        if age_s < READBACK_GRACE_S:
            return None
    values, error = stored_desired()
    return readback_line(variant, state.desired_replicas, values, error)


def readback_line(
    variant: Variant,
    desired: int,
    values: dict[tuple[str, str], list[float]] | None,
    error: str,
) -> StatusLine | None:
    """Describe a published desired count that Prometheus lacks or stores otherwise.

    Example: "Published desired 5; Prometheus stores 4".
    """
    if values is None:
        text = f"Cannot read {DESIRED_METRIC} back from Prometheus: {error}"
        return StatusLine("warning", text, "desired_readback_failed")
    stored = values.get((variant.namespace, variant.name))
    if not stored:
        text = (
            f"Published desired {desired}; Prometheus stores no {DESIRED_METRIC} "
            "series for this variant: check that it scrapes the console's /metrics"
        )
        return StatusLine("warning", text, "desired_not_in_prometheus")
    if any(abs(value - desired) < 1e-9 for value in stored):
        return None
    stored_text = ", ".join(count_text(value) for value in sorted(set(stored)))
    text = f"Published desired {desired}; Prometheus stores {stored_text}"
    return StatusLine("warning", text, "desired_mismatch_in_prometheus")


def kv_missing_line(state: VariantState | None) -> StatusLine | None:
    if state is None or not state.missing_kv_cycles:
        return None
    cycles = state.missing_kv_cycles
    noun = "cycle" if cycles == 1 else "cycles"
    return StatusLine(
        "warning",
        f"KV-cache usage missing for {cycles} {noun}",
        "missing_kv_cache_usage",
    )


def grace_line(state: VariantState | None) -> StatusLine | None:
    """Warn about a termination grace period too short to finish long generations."""
    if state is None or not isinstance(state.conditions, list):
        return None
    for item in state.conditions:
        if not isinstance(item, dict) or item.get("reason") not in SHORT_GRACE_REASONS:
            continue
        seconds = item.get("grace_period_s")
        period = f"{seconds} s grace period" if seconds is not None else "grace period"
        text = (
            f"Warning: the {period} is shorter than the longest expected "
            f"generation; set terminationGracePeriodSeconds to at least "
            f"{SUGGESTED_GRACE_PERIOD_S} s with a pre-stop hook that drains "
            "the replica"
        )
        return StatusLine("warning", text, str(item["reason"]))
    return None


def pinned_line(variant: Variant, now: dt.datetime) -> StatusLine | None:
    if variant.pinned_replicas is None:
        return None
    if variant.pinned_until is not None and variant.pinned_until <= now:
        return None
    until = f" until {hhmm(variant.pinned_until)}" if variant.pinned_until else ""
    return StatusLine(
        "info", f"Pinned at {variant.pinned_replicas} replicas{until}", "pinned"
    )


def status_lines(
    variant: Variant,
    state: VariantState | None,
    decision: Decision | None,
    samples_total: int,
    samples_bad: int,
) -> list[StatusLine]:
    """Return every status line that applies, most urgent first."""
    candidates = [
        degraded_line(state, samples_total, samples_bad),
        able_line(state),
        starting_line(state),
        published_line(state),
        prometheus_line(variant, state),
        limited_line(variant, state, decision),
        kv_missing_line(state),
        grace_line(state),
        pinned_line(variant, timezone.now()),
    ]
    return [line for line in candidates if line is not None]


def unknown_or(value: object) -> str:
    """Show a missing count as "unknown", never as 0."""
    return "unknown" if value is None else str(value)


@dataclass(frozen=True)
class ReadOnlyBanner:
    """The reason this console instance does not act on the cluster, for every page."""

    holder: str
    detail: str
    checked_at: dt.datetime | None

    @property
    def text(self) -> str:
        if self.holder:
            return f"Read-only: instance {self.holder} leads this cluster"
        return "Read-only: no instance is known to lead this cluster"


def read_only_banner() -> ReadOnlyBanner | None:
    """Return the banner when the last leader election left this instance read-only."""
    row = leader.recorded()
    holder = leader.read_only_holder(row)
    if row is None or holder is None:
        return None
    return ReadOnlyBanner(holder=holder, detail=row.detail, checked_at=row.checked_at)


# A finished cycle older than this many cycle periods means the Celery worker
# or beat has stopped.
STALLED_AFTER_PERIODS = 3


@dataclass(frozen=True)
class StalledCyclesBanner:
    """The warning every page shows when control cycles have stopped finishing."""

    seconds: int
    last_finished_at: dt.datetime

    @property
    def text(self) -> str:
        return (
            f"No control cycle has finished for {self.seconds} s: check that the "
            "Celery worker and beat are running."
        )


def stalled_cycles_banner(
    last_finished_at: dt.datetime | None, now: dt.datetime | None = None
) -> StalledCyclesBanner | None:
    """Return the banner when the last finished cycle is older than 3 cycle periods.

    NOTE: a fresh install with no finished cycle shows no banner. The page
    footer then shows that no control cycle has finished yet.
    """
    if last_finished_at is None:
        return None
    now = now or timezone.now()
    age_s = (now - last_finished_at).total_seconds()
    if age_s <= STALLED_AFTER_PERIODS * float(settings.WVA_CYCLE_PERIOD_S):
        return None
    return StalledCyclesBanner(seconds=int(age_s), last_finished_at=last_finished_at)


def last_finished_at() -> dt.datetime | None:
    """Return when the latest control cycle finished, or None before the first."""
    return ControlCycle.objects.aggregate(last=Max("finished_at"))["last"]
