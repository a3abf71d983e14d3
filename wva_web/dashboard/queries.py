"""Read-side queries of the pages, scoped to what the user may see.

Every list section is one query (or a fixed small number), never one per row.
Team scoping comes from `wva_web.catalog.access`, so the pages, the CSV export
and the API share one definition of what a user may see.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone

from wva_web.catalog import access
from wva_web.catalog.models import ROLE_RANK, Accelerator, Membership, Role, Variant
from wva_web.control.models import (
    AcceleratorSample,
    ActionState,
    AuditLog,
    ControlCycle,
    CycleStatus,
    Decision,
    MetricSample,
    SampleStatus,
    ScaleAction,
    VariantState,
)
from wva_web.dashboard import charts

User: TypeAlias = AbstractBaseUser | AnonymousUser

CHART_WINDOW = dt.timedelta(hours=1)
# The alert banner appears from this many failing cycles in a row: one or
# two failures are common noise, three (90 s at the default period) matter.
ALERT_AFTER_CYCLES = 3
FAILING_STATUSES = (CycleStatus.METRICS_UNAVAILABLE, CycleStatus.FAILED)
HISTORY_LIMIT = 200
CYCLES_PER_PAGE = 50
AUDIT_PER_PAGE = 50


# Roles ---------------------------------------------------------------------


def roles_by_team(user: User) -> dict[int, int]:
    """Return the user's role rank per team id, read in one query."""
    if not user.is_authenticated:
        return {}
    rows = Membership.objects.filter(user_id=user.pk).values_list("team_id", "role")
    return {team_id: ROLE_RANK[Role(role)] for team_id, role in rows}


def holds_role(user: User, ranks: dict[int, int], team_id: int, role: Role) -> bool:
    """Tell whether the user has `role` or a higher one in the team."""
    if getattr(user, "is_superuser", False):
        return True
    return ranks.get(team_id, 0) >= ROLE_RANK[role]


# Alert banner and last cycle -------------------------------------------------


@dataclass(frozen=True)
class CycleAlert:
    """A run of failing cycles: their count, the first one's start, the last error."""

    cycles: int
    since: dt.datetime
    status: str
    error: str


def finished_cycles(limit: int) -> list[ControlCycle]:
    return list(
        ControlCycle.objects.exclude(status=CycleStatus.RUNNING)
        .only("id", "started_at", "finished_at", "status", "errors")
        .order_by("-started_at")[:limit]
    )


def cycle_alert(recent: list[ControlCycle]) -> CycleAlert | None:
    """Return the alert for the failing cycles at the head of `recent`, newest first.

    A running cycle is not counted: it has not failed yet.
    """
    streak: list[ControlCycle] = []
    for cycle in recent:
        if cycle.status not in FAILING_STATUSES:
            break
        streak.append(cycle)
    if len(streak) < ALERT_AFTER_CYCLES:
        return None
    latest = streak[0]
    first_error = latest.errors[0] if latest.errors else ""
    return CycleAlert(
        cycles=len(streak),
        since=streak[-1].started_at,
        status=latest.get_status_display(),
        error=error_text(first_error),
    )


def error_text(error: Any) -> str:
    """Format one entry of `ControlCycle.errors` (a string or a dict) as one line."""
    if isinstance(error, dict):
        parts = [
            f"{key}: {error[key]}"
            for key in ("phase", "variant", "model", "pod", "query", "kind", "message")
            if error.get(key) not in (None, "")
        ]
        return "; ".join(parts) if parts else str(error)
    return str(error)


# Overview --------------------------------------------------------------------


@dataclass
class AcceleratorCard:
    accelerator: Accelerator
    latest: AcceleratorSample | None

    @property
    def colour(self) -> str:
        """The accelerator's colour in the charts, e.g. "#1f77b4"."""
        return charts.accelerator_colour(self.accelerator.name)


def accelerator_samples(since: dt.datetime) -> list[AcceleratorSample]:
    return list(
        AcceleratorSample.objects.filter(at__gte=since)
        .select_related("accelerator")
        .order_by("at", "accelerator__name")
    )


def accelerator_cards(samples: list[AcceleratorSample]) -> list[AcceleratorCard]:
    """Build one card per accelerator with its newest sample of the window.

    Only accelerators that some variant uses, or that have a sample in the
    window, get a card: the catalogue lists GPU types no variant runs on.
    """
    latest: dict[int, AcceleratorSample] = {}
    for sample in samples:
        latest[sample.accelerator_id] = sample
    used = Accelerator.objects.filter(
        Q(pk__in=Variant.objects.values("accelerator_id")) | Q(pk__in=list(latest))
    )
    return [
        AcceleratorCard(accelerator=acc, latest=latest.get(acc.pk))
        for acc in used.order_by("name")
    ]


def pending_count(user: User) -> int:
    return access.visible_actions(user).filter(state=ActionState.PENDING).count()


# Variants --------------------------------------------------------------------


@dataclass
class VariantRow:
    """A variant with its latest state, decision and sample counts of the last cycle."""

    variant: Variant
    state: VariantState | None
    decision: Decision | None
    samples_total: int = 0
    samples_bad: int = 0
    lines: list[Any] = field(default_factory=list)


def variant_state(variant: Variant) -> VariantState | None:
    try:
        return variant.state
    except VariantState.DoesNotExist:
        return None


def latest_decision_ids(variants: QuerySet[Variant]) -> QuerySet[Variant]:
    newest = Decision.objects.filter(variant=OuterRef("pk")).order_by(
        "-cycle__started_at", "-id"
    )
    return variants.annotate(latest_decision_id=Subquery(newest.values("id")[:1]))


def variant_rows(variants: QuerySet[Variant]) -> list[VariantRow]:
    """Load variants, states, latest decisions and sample counts in three queries."""
    loaded = list(
        latest_decision_ids(variants).select_related(
            "model", "model__team", "accelerator", "state"
        )
    )
    decision_ids = [v.latest_decision_id for v in loaded if v.latest_decision_id]
    decisions = Decision.objects.select_related("cycle").in_bulk(decision_ids)
    states = {v.pk: variant_state(v) for v in loaded}
    counts = sample_counts(
        {v.pk: s.last_cycle_id for v, s in ((v, states[v.pk]) for v in loaded) if s}
    )
    rows = []
    for variant in loaded:
        state = states[variant.pk]
        total, bad = (0, 0)
        if state is not None:
            total, bad = counts.get((variant.pk, state.last_cycle_id), (0, 0))
        rows.append(
            VariantRow(
                variant=variant,
                state=state,
                decision=decisions.get(variant.latest_decision_id),
                samples_total=total,
                samples_bad=bad,
            )
        )
    return rows


def sample_counts(
    last_cycle_by_variant: dict[int, int | None],
) -> dict[tuple[int, int], tuple[int, int]]:
    """Count samples, and ready replicas' samples without usable metrics.

    A replica that is still starting may fail its scrape without the
    variant being degraded, so its sample counts in the total only.
    """
    cycle_ids = {c for c in last_cycle_by_variant.values() if c is not None}
    if not cycle_ids:
        return {}
    rows = (
        MetricSample.objects.filter(
            variant_id__in=list(last_cycle_by_variant), cycle_id__in=cycle_ids
        )
        .values("variant_id", "cycle_id")
        .annotate(
            total=Count("id"),
            bad=Count(
                "id",
                filter=~Q(status=SampleStatus.OK) & Q(ready=True, phase="Running"),
            ),
        )
    )
    return {(r["variant_id"], r["cycle_id"]): (r["total"], r["bad"]) for r in rows}


def replica_samples(variant: Variant, state: VariantState | None) -> list[MetricSample]:
    """Return the samples of the newest cycle that sampled this variant, by pod."""
    cycle_id = state.last_cycle_id if state is not None else None
    if cycle_id is None:
        cycle_id = (
            MetricSample.objects.filter(variant=variant)
            .order_by("-sampled_at")
            .values_list("cycle_id", flat=True)
            .first()
        )
    if cycle_id is None:
        return []
    return list(
        MetricSample.objects.filter(variant=variant, cycle_id=cycle_id).order_by("pod")
    )


def variant_history(
    variant: Variant, since: dt.datetime
) -> tuple[list[MetricSample], list[Decision]]:
    samples = list(
        MetricSample.objects.filter(variant=variant, sampled_at__gte=since)
        .only("pod", "sampled_at", "kv_cache_usage", "status")
        .order_by("sampled_at")
    )
    decisions = list(
        Decision.objects.filter(variant=variant, cycle__started_at__gte=since)
        .select_related("cycle")
        .order_by("cycle__started_at")
    )
    return samples, decisions


def variant_actions(user: User, variant: Variant) -> list[ScaleAction]:
    return list(
        scoped_actions(user).filter(variant=variant).order_by("-created_at")[:20]
    )


# Actions ---------------------------------------------------------------------


def scoped_actions(user: User) -> QuerySet[ScaleAction]:
    return access.visible_actions(user).select_related(
        "variant",
        "variant__accelerator",
        "variant__model__team",
        "decision",
        "requested_by",
        "decided_by",
    )


def pending_actions(user: User) -> list[ScaleAction]:
    return list(
        scoped_actions(user).filter(state=ActionState.PENDING).order_by("created_at")
    )


def action_history(user: User) -> list[ScaleAction]:
    return list(
        scoped_actions(user)
        .exclude(state=ActionState.PENDING)
        .order_by("-created_at")[:HISTORY_LIMIT]
    )


# Cycles ----------------------------------------------------------------------


def cycle_page(offset: int) -> list[ControlCycle]:
    return list(
        ControlCycle.objects.defer("inputs", "outputs").order_by("-started_at")[
            offset : offset + CYCLES_PER_PAGE + 1
        ]
    )


def cycle_samples(user: User, cycle: ControlCycle) -> dict[Variant, list[MetricSample]]:
    samples = (
        MetricSample.objects.filter(
            cycle=cycle, variant__in=access.visible_variants(user)
        )
        .select_related("variant")
        .order_by("variant__name", "pod")
    )
    grouped: dict[Variant, list[MetricSample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.variant].append(sample)
    return dict(grouped)


def cycle_decisions(user: User, cycle: ControlCycle) -> list[Decision]:
    return list(
        Decision.objects.filter(cycle=cycle, variant__in=access.visible_variants(user))
        .select_related("variant", "variant__accelerator")
        .order_by("variant__name")
    )


def visible_errors(user: User, cycle: ControlCycle) -> list[str]:
    """Return the cycle's errors that name no variant or model hidden from the user.

    Errors that name another team's variant or model are left out, so the page
    does not reveal which variants exist.
    """
    errors = cycle.errors if isinstance(cycle.errors, list) else [cycle.errors]
    texts = [error_text(e) for e in errors]
    if getattr(user, "is_superuser", False):
        return texts
    visible = access.visible_variants(user).values_list("pk", flat=True)
    hidden = set(
        Variant.objects.exclude(pk__in=visible).values_list("name", "model__name")
    )
    hidden_names = {name for pair in hidden for name in pair}
    visible_models = set(
        Variant.objects.filter(pk__in=visible).values_list("model__name", flat=True)
    )
    hidden_names -= visible_models
    return [t for t in texts if not any(name in t for name in hidden_names)]


# Audit -----------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One field of an audited row: its name and its value before and after."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class AuditEntry:
    """An audit row, its changed fields, and a label and page link of its object.

    `created` is True when the row has no before values, as for a proposal.
    """

    row: AuditLog
    changes: list[FieldChange]
    created: bool
    label: str
    link: str
    variant_name: str = ""
    variant_link: str = ""


def audit_object(row: AuditLog) -> tuple[str, str]:
    """Return a label and a page link (or "") for the object an audit row names."""
    kind, key = row.object_type, row.object_id
    if kind == "variant" and key.isdigit():
        return f"variant {key}", reverse("dashboard:variant-detail", args=[int(key)])
    if kind == "scale_action":
        return f"scale action {key}", f"{reverse('dashboard:actions')}#action-{key}"
    if kind == "comparison_run" and key.isdigit():
        return _comparison_label(key, row.after), reverse(
            "simulate:run-detail", args=[int(key)]
        )
    return f"{kind.replace('_', ' ')} {key}", ""


def _comparison_label(key: str, options: object) -> str:
    """Label a comparison run by its trace and policies, from its audit row."""
    label = f"comparison run {key}"
    if not isinstance(options, dict):
        return label
    trace = options.get("trace")
    policies = options.get("policies")
    if isinstance(policies, list) and policies:
        names = ", ".join(str(name) for name in policies)
        return f"{label} ({trace or 'unknown trace'}: {names})"
    return f"{label} ({trace})" if trace else label


def audit_entry(row: AuditLog) -> AuditEntry:
    """Pair an audit row with the fields whose value changed.

    A row that created something (empty `before`) lists the fields of `after`
    that have a value, each with a missing before value (None).
    """
    before = row.before if isinstance(row.before, dict) else {}
    after = row.after if isinstance(row.after, dict) else {}
    if not before:
        changes = [
            FieldChange(name, None, value)
            for name, value in after.items()
            if value not in (None, "")
        ]
    else:
        names = list(after) + [name for name in before if name not in after]
        changes = [
            FieldChange(name, before.get(name), after.get(name))
            for name in names
            if before.get(name) != after.get(name)
        ]
    label, link = audit_object(row)
    return AuditEntry(
        row=row, changes=changes, created=not before, label=label, link=link
    )


def audit_entries(rows: Iterable[AuditLog]) -> list[AuditEntry]:
    """Build the entries of audit rows, naming the variant of each scale action.

    The variants of all rows are read in at most two queries. A row whose
    scale action or variant no longer exists keeps its label alone.
    """
    entries = [audit_entry(row) for row in rows]
    action_ids = {
        int(e.row.object_id)
        for e in entries
        if e.row.object_type == "scale_action" and e.row.object_id.isdigit()
    }
    variant_of_action = dict(
        ScaleAction.objects.filter(pk__in=action_ids).values_list("pk", "variant_id")
    )
    variant_ids = set(variant_of_action.values()) | {
        int(e.row.object_id)
        for e in entries
        if e.row.object_type == "variant" and e.row.object_id.isdigit()
    }
    names = dict(Variant.objects.filter(pk__in=variant_ids).values_list("pk", "name"))
    named = []
    for entry in entries:
        key = entry.row.object_id
        variant_id = None
        if key.isdigit() and entry.row.object_type == "scale_action":
            variant_id = variant_of_action.get(int(key))
        elif key.isdigit() and entry.row.object_type == "variant":
            variant_id = int(key)
        if variant_id is None or variant_id not in names:
            named.append(entry)
            continue
        link = reverse("dashboard:variant-detail", args=[variant_id])
        named.append(replace(entry, variant_name=names[variant_id], variant_link=link))
    return named


def now() -> dt.datetime:
    return timezone.now()
