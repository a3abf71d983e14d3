"""Limits on where a model's next replica may go, applied around the analysis.

Before the `wva-v1` analysis each variant gets an effective max, fed to the
analysis as its max replicas:

- pinned by an override (`pinned_until` in the future): no growth, so the
  max is the current count (`pinned`);
- a scale-up of the variant failed as `unschedulable` within
  `WVA_UNSCHEDULABLE_COOLDOWN_S`: no growth (`unschedulable_recently`);
- an HPA targets the workload: the smaller of the variant's max and the
  HPA's `maxReplicas` (`capped_by_hpa_max`), since the HPA sets no more
  than that whatever the console publishes.

The analysis then gives the replica to the next-cheapest variant with
room. After the analysis, a variant whose limit kept the replica from it
carries the limit's reason code and a ScalingLimited condition.

Rejection cool-down: after an approver rejects a proposal of the control
cycle, no change in the same direction is proposed for that variant for
`WVA_REJECT_COOLDOWN_S` (`rejected_recently`). A larger change in the same
direction is held too, because the approver rejected the direction, not
only the size. The change is held on the variant and not moved to another
variant, since moving it would route around the approver's decision.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings

from wva_web.control.cycle_safety import add_reason
from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.control.models import ActionState, AuditLog, ScaleAction

logger = logging.getLogger(__name__)

# Reason codes, the same on the Decision, the VariantState condition and the log.
PINNED = "pinned"
UNSCHEDULABLE_RECENTLY = "unschedulable_recently"
CAPPED_BY_HPA_MAX = "capped_by_hpa_max"
REJECTED_RECENTLY = "rejected_recently"
CAPPED_BY_MAX = "capped_by_max"
# Decision.bound_by of each limit.
BOUND_BY = {
    PINNED: "pinned",
    UNSCHEDULABLE_RECENTLY: UNSCHEDULABLE_RECENTLY,
    CAPPED_BY_HPA_MAX: "hpa_max_replicas",
    REJECTED_RECENTLY: REJECTED_RECENTLY,
}
UNSCHEDULABLE = "unschedulable"


def minute_utc(at: datetime) -> str:
    """Format a time for messages as `YYYY-MM-DD HH:MM UTC`, seconds dropped."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class CoolDowns:
    """Cool-downs running at the cycle's time, by variant id, with their ends."""

    # Direction (+1 up, -1 down) to the end of its rejection cool-down.
    rejected: dict[int, dict[int, datetime]] = field(default_factory=dict)
    unschedulable: dict[int, datetime] = field(default_factory=dict)


def read_cool_downs(variant_ids: Iterable[int], now: datetime) -> CoolDowns:
    """Read recent rejections and unschedulable failures in three queries."""
    ids = list(variant_ids)
    cool = CoolDowns()
    reject_s = timedelta(seconds=float(settings.WVA_REJECT_COOLDOWN_S))
    rejected = ScaleAction.objects.filter(
        variant_id__in=ids,
        state=ActionState.REJECTED,
        requested_by__isnull=True,
        decided_at__gt=now - reject_s,
    ).values_list("variant_id", "from_replicas", "to_replicas", "decided_at")
    for variant_id, before, after, decided_at in rejected:
        if after == before:
            continue
        direction = 1 if after > before else -1
        ends = cool.rejected.setdefault(variant_id, {})
        end = decided_at + reject_s
        ends[direction] = max(ends.get(direction, end), end)
    unschedulable_s = timedelta(seconds=float(settings.WVA_UNSCHEDULABLE_COOLDOWN_S))
    failed_at: dict[int, datetime] = {}
    audit = AuditLog.objects.filter(
        verb="fail",
        object_type="scale_action",
        after__failure_reason=UNSCHEDULABLE,
        at__gt=now - unschedulable_s,
    ).values_list("object_id", "at")
    for object_id, at in audit:
        if object_id.isdigit():
            failed_at[int(object_id)] = max(at, failed_at.get(int(object_id), at))
    failed = ScaleAction.objects.filter(
        pk__in=list(failed_at), variant_id__in=ids
    ).values_list("pk", "variant_id")
    for pk, variant_id in failed:
        end = failed_at[pk] + unschedulable_s
        earlier = cool.unschedulable.get(variant_id, end)
        cool.unschedulable[variant_id] = max(end, earlier)
    return cool


def set_limits(view: VariantView, cool: CoolDowns, now: datetime) -> None:
    """Set the view's growth limit, its reason code and its rejection cool-downs."""
    variant = view.variant
    view.rejected = dict(cool.rejected.get(variant.pk, {}))
    current = view.current
    if current is None:
        return
    if variant.pinned_until is not None and variant.pinned_until > now:
        view.growth_limit, view.limit_reason = current, PINNED
    elif variant.pk in cool.unschedulable:
        view.growth_limit, view.limit_reason = current, UNSCHEDULABLE_RECENTLY
    hpa_max = view.hpa_status.max_replicas if view.hpa_status else None
    if hpa_max is not None and hpa_max < view.max_replicas:
        view.growth_limit, view.limit_reason = hpa_max, CAPPED_BY_HPA_MAX


def _limit_text(view: VariantView, cool_end: datetime | None) -> str:
    reason = view.limit_reason
    if reason == PINNED:
        until = view.variant.pinned_until
        return f"pinned until {minute_utc(until) if until else '-'}"
    if reason == UNSCHEDULABLE_RECENTLY:
        end = minute_utc(cool_end) if cool_end else "-"
        return f"a scale-up stayed Pending past the timeout; no scale-up until {end}"
    name = view.hpa_status.name if view.hpa_status else "-"
    return f"HPA {name} maxReplicas"


def _price_key(view: VariantView) -> tuple[float, str]:
    return view.variant.usd_per_replica_hour, view.variant.name


def _eligible(view: VariantView) -> bool:
    """True when `wva-v1` would pick the variant for a scale-up but for its limit."""
    current = view.current
    if current is None or current == 0 or any(p.pending for p in view.live_pods):
        return False
    return view.max_replicas <= current < view.variant.max_replicas


def explain_limits(
    views: list[VariantView],
    decided: dict[int, VariantDecision],
    cool: CoolDowns,
) -> None:
    """Name the limit of each variant that it kept from a scale-up, in place.

    A variant capped by its limit gets the limit's code instead of
    `capped_by_max`. A limited variant cheaper than the one that grew, or
    with none growing, gets the code too: the replica would have gone to it.
    """
    winners = [
        view
        for view in views
        if view.current is not None and decided[view.variant.pk].target > view.current
    ]
    winner = min(winners, key=_price_key) if winners else None
    for view in views:
        if not view.limit_reason or view.current is None:
            continue
        decision = decided[view.variant.pk]
        model_reasons = decision.analysis.get("model", {}).get("reasons", [])
        wants_up = any(code.startswith("scale_up:") for code in model_reasons)
        capped = CAPPED_BY_MAX in decision.reasons and view.max_replicas < (
            view.variant.max_replicas
        )
        preferred = (
            wants_up
            and _eligible(view)
            and (winner is None or _price_key(view) < _price_key(winner))
        )
        if not capped and not preferred:
            continue
        _mark_limited(view, decision, cool.unschedulable.get(view.variant.pk), capped)


def _mark_limited(
    view: VariantView,
    decision: VariantDecision,
    cool_end: datetime | None,
    capped: bool,
) -> None:
    current = int(view.current or 0)
    code = view.limit_reason
    wanted = max(decision.target, current + 1) if capped else current + 1
    if capped:
        decision.reasons = [r for r in decision.reasons if r != CAPPED_BY_MAX]
    add_reason(decision, code)
    decision.bound_by = BOUND_BY[code]
    decision.analysis["wanted_replicas"] = wanted
    verb = "capped at" if code == CAPPED_BY_HPA_MAX else "held at"
    decision.message = (
        f"wants {wanted}, {verb} {view.max_replicas} ({_limit_text(view, cool_end)})"
    )
    if code != CAPPED_BY_HPA_MAX:
        decision.held_scale_up = code


def hold_rejected(view: VariantView, decision: VariantDecision) -> None:
    """Hold a change in a direction an approver rejected within the cool-down."""
    current = view.current
    if current is None or decision.target == current:
        return
    direction = 1 if decision.target > current else -1
    end = view.rejected.get(direction)
    if end is None:
        return
    word = "scale-up" if direction > 0 else "reduction"
    decision.message = (
        f"wants {decision.target}, held at {current}: a {word} was rejected; "
        f"cool-down until {minute_utc(end)}"
    )
    decision.analysis["wanted_replicas"] = decision.target
    decision.target = current
    decision.victim_pod = ""
    decision.bound_by = BOUND_BY[REJECTED_RECENTLY]
    add_reason(decision, REJECTED_RECENTLY)
    if direction > 0:
        decision.held_scale_up = REJECTED_RECENTLY
