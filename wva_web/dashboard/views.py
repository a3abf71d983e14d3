"""Pages of the console: overview, variants, actions, cycles and live JSON.

Every page reads through the team-scoped querysets of
`wva_web.catalog.access`; state changes go through the action functions of
`wva_web.control.actions`, which also check the user's rights.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.staticfiles import finders
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotModified,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from wva_web.catalog import access
from wva_web.catalog.models import Role
from wva_web.control import actions
from wva_web.control.models import ScaleAction
from wva_web.dashboard import charts, explain, forms, queries, status, vendor
from wva_web.dashboard.forms import ManualScaleForm, OverrideForm, RejectForm

logger = logging.getLogger(__name__)

# Seconds between two polls of /live.json by the pages.
LIVE_POLL_S = 10


def page_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """Return the context every page shares: the alert banner and the last cycle."""
    recent = queries.finished_cycles(50)
    return {
        "alert": queries.cycle_alert(recent),
        "last_cycle": recent[0] if recent else None,
        "live_poll_s": LIVE_POLL_S,
        **extra,
    }


# Overview --------------------------------------------------------------------


@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    since = queries.now() - queries.CHART_WINDOW
    samples = queries.accelerator_samples(since)
    context = page_context(
        request,
        cards=queries.accelerator_cards(samples),
        chart=charts.accelerator_chart(samples),
        pending=queries.pending_count(request.user),
    )
    return render(request, "dashboard/overview.html", context)


@require_GET
def live_json(request: HttpRequest) -> JsonResponse:
    """Return the numbers the pages refresh every few seconds."""
    recent = queries.finished_cycles(50)
    alert = queries.cycle_alert(recent)
    last = recent[0] if recent else None
    since = queries.now() - queries.CHART_WINDOW
    cards = queries.accelerator_cards(queries.accelerator_samples(since))
    rows = queries.variant_rows(access.visible_variants(request.user))
    return JsonResponse(
        {
            "last_cycle": None
            if last is None
            else {"id": last.pk, "status": last.status, "started_at": last.started_at},
            "alert": None
            if alert is None
            else {"cycles": alert.cycles, "since": alert.since, "error": alert.error},
            "pending_actions": queries.pending_count(request.user),
            "accelerators": [live_card(card) for card in cards],
            "variants": [live_variant(row) for row in rows],
        }
    )


def live_card(card: queries.AcceleratorCard) -> dict[str, Any]:
    sample = card.latest
    return {
        "name": card.accelerator.name,
        "gpus_available": card.accelerator.gpus_available,
        "at": None if sample is None else sample.at,
        "replicas": None if sample is None else sample.replicas,
        "ready_replicas": None if sample is None else sample.ready_replicas,
        "gpus_used": None if sample is None else sample.gpus_used,
        "utilisation": None if sample is None else sample.utilisation,
        "power_w": None if sample is None else sample.power_w,
        "usd_per_hour": None if sample is None else sample.usd_per_hour,
    }


def live_variant(row: queries.VariantRow) -> dict[str, Any]:
    state = row.state
    lines = status.status_lines(
        row.variant, state, row.decision, row.samples_total, row.samples_bad
    )
    return {
        "id": row.variant.pk,
        "name": row.variant.name,
        "current_replicas": None if state is None else state.current_replicas,
        "ready_replicas": None if state is None else state.ready_replicas,
        "proposed_replicas": None if state is None else state.proposed_replicas,
        "hpa_target_replicas": None if state is None else state.hpa_target_replicas,
        "degraded": bool(state and state.degraded)
        or any(line.text.startswith("Degraded") for line in lines),
        "status": [{"text": line.text, "reason": line.reason} for line in lines],
    }


# Variants --------------------------------------------------------------------


@require_GET
def variant_list(request: HttpRequest) -> HttpResponse:
    rows = queries.variant_rows(access.visible_variants(request.user))
    for row in rows:
        row.lines = status.status_lines(
            row.variant, row.state, row.decision, row.samples_total, row.samples_bad
        )
    return render(
        request, "dashboard/variant_list.html", page_context(request, rows=rows)
    )


@require_GET
def variant_detail(request: HttpRequest, pk: int) -> HttpResponse:
    rows = queries.variant_rows(access.visible_variants(request.user).filter(pk=pk))
    if not rows:
        raise Http404("variant not found")
    row = rows[0]
    row.lines = status.status_lines(
        row.variant, row.state, row.decision, row.samples_total, row.samples_bad
    )
    since = queries.now() - queries.CHART_WINDOW
    history_samples, history_decisions = queries.variant_history(row.variant, since)
    ranks = queries.roles_by_team(request.user)
    decision = row.decision
    context = page_context(
        request,
        row=row,
        variant=row.variant,
        explanation=explain.explain(decision, decision.cycle.policy)
        if decision is not None
        else None,
        conditions=row.state.conditions if row.state else [],
        samples=queries.replica_samples(row.variant, row.state),
        chart=charts.variant_chart(history_samples, history_decisions),
        actions=queries.variant_actions(request.user, row.variant),
        can_request=queries.holds_role(
            request.user, ranks, row.variant.model.team_id, Role.OPERATOR
        ),
        scale_form=ManualScaleForm(),
    )
    return render(request, "dashboard/variant_detail.html", context)


@require_POST
def variant_scale(request: HttpRequest, pk: int) -> HttpResponse:
    """Record a manual scale request for the variant."""
    variant = get_object_or_404(
        access.visible_variants(request.user).select_related("model", "accelerator"),
        pk=pk,
    )
    target = reverse("dashboard:variant-detail", args=[pk])
    form = ManualScaleForm(request.POST)
    if not form.is_valid():
        bounds = {"to_replicas": (variant.min_replicas, variant.max_replicas)}
        messages.error(request, f"Invalid request: {form_errors(form, bounds)}")
        return HttpResponseRedirect(target)
    replicas = form.cleaned_data["to_replicas"]
    try:
        action = actions.request_manual_action(request.user, variant, replicas)
    except actions.ActionError as exc:
        logger.info("manual scale request on variant %s failed: %s", pk, exc)
        messages.error(request, f"Request not recorded: {exc}")
        return HttpResponseRedirect(target)
    messages.success(
        request,
        f"Requested {variant.name} {action.from_replicas} → {action.to_replicas} "
        f"(scale action {action.pk}); it waits for an approver.",
    )
    return HttpResponseRedirect(target)


# Actions ---------------------------------------------------------------------


def decision_rights(
    user: Any, ranks: dict[int, int], action: ScaleAction
) -> dict[str, bool]:
    """Tell which buttons to show; the action functions check again on POST."""
    team_id = action.variant.model.team_id
    approver = queries.holds_role(user, ranks, team_id, Role.APPROVER)
    own = action.requested_by_id is not None and action.requested_by_id == user.pk
    self_blocked = own and (not access.is_superuser(user) or settings.WVA_FOUR_EYES)
    return {
        "approve": approver and not self_blocked,
        "override": approver and not self_blocked,
        "reject": approver or own,
    }


@require_GET
def action_list(request: HttpRequest) -> HttpResponse:
    ranks = queries.roles_by_team(request.user)
    pending = queries.pending_actions(request.user)
    cards = [
        (action, decision_rights(request.user, ranks, action)) for action in pending
    ]
    context = page_context(
        request,
        pending=cards,
        history=queries.action_history(request.user),
        history_limit=queries.HISTORY_LIMIT,
        reject_max_length=forms.REJECT_MAX_LENGTH,
        max_pin_minutes=forms.MAX_PIN_MINUTES,
    )
    return render(request, "dashboard/action_list.html", context)


@require_POST
def action_approve(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        action = actions.approve_action(pk, request.user)
    except actions.ActionError as exc:
        return action_rejected(request, pk, "Not approved", exc)
    messages.success(
        request, f"Approved scale action {action.pk} ({describe(action)})."
    )
    return HttpResponseRedirect(reverse("dashboard:actions"))


@require_POST
def action_reject(request: HttpRequest, pk: int) -> HttpResponse:
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Invalid rejection: {form_errors(form)}")
        return HttpResponseRedirect(reverse("dashboard:actions"))
    try:
        action = actions.reject_action(pk, request.user, form.cleaned_data["message"])
    except actions.ActionError as exc:
        return action_rejected(request, pk, "Not rejected", exc)
    messages.success(
        request, f"Rejected scale action {action.pk} ({describe(action)})."
    )
    return HttpResponseRedirect(reverse("dashboard:actions"))


@require_POST
def action_override(request: HttpRequest, pk: int) -> HttpResponse:
    form = OverrideForm(request.POST)
    if not form.is_valid():
        bounds = override_bounds(request.user, pk)
        messages.error(request, f"Invalid override: {form_errors(form, bounds)}")
        return HttpResponseRedirect(reverse("dashboard:actions"))
    try:
        action = actions.override_action(
            pk, request.user, form.cleaned_data["replicas"], form.duration_s()
        )
    except actions.ActionError as exc:
        return action_rejected(request, pk, "Not overridden", exc)
    messages.success(
        request, f"Overrode scale action {action.pk} ({describe(action)})."
    )
    return HttpResponseRedirect(reverse("dashboard:actions"))


def action_rejected(
    request: HttpRequest, pk: int, what: str, exc: actions.ActionError
) -> HttpResponse:
    """Show a decision that the action functions rejected as a message."""
    if isinstance(exc, actions.ActionNotFound):
        raise Http404(str(exc))
    logger.info("decision on scale action %s by %s failed: %s", pk, request.user, exc)
    messages.error(request, f"{what}: {exc}")
    return HttpResponseRedirect(reverse("dashboard:actions"))


def describe(action: ScaleAction) -> str:
    return f"{action.variant.name} {action.from_replicas} → {action.effective_replicas}"


def form_errors(form: Any, bounds: dict[str, tuple[int, int]] | None = None) -> str:
    return forms.error_text(form, bounds)


def override_bounds(user: Any, pk: int) -> dict[str, tuple[int, int]]:
    """Return the replica range of the action's variant, {} if it is not visible."""
    action = (
        access.visible_actions(user).filter(pk=pk).select_related("variant").first()
    )
    if action is None:
        return {}
    variant = action.variant
    return {"replicas": (variant.min_replicas, variant.max_replicas)}


CSV_COLUMNS = (
    "id",
    "created_at",
    "variant",
    "model",
    "accelerator",
    "from_replicas",
    "to_replicas",
    "override_replicas",
    "state",
    "usd_per_hour_change",
    "requested_by",
    "decided_by",
    "decided_at",
    "applied_at",
    "failure_reason",
    "message",
)


class EchoBuffer:
    """A file-like object whose write returns the line, for streaming csv rows."""

    def write(self, value: str) -> str:
        return value


def csv_text(value: object) -> str:
    """Return a cell that spreadsheets do not run as a formula."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def csv_row(action: ScaleAction) -> list[object]:
    return [
        action.pk,
        action.created_at.isoformat(),
        csv_text(action.variant.name),
        csv_text(action.variant.model.name),
        csv_text(action.variant.accelerator.name),
        action.from_replicas,
        action.to_replicas,
        "" if action.override_replicas is None else action.override_replicas,
        action.state,
        f"{action.usd_per_hour_change:.2f}",
        csv_text(
            action.requested_by.get_username() if action.requested_by else "system"
        ),
        csv_text(action.decided_by.get_username() if action.decided_by else ""),
        action.decided_at.isoformat() if action.decided_at else "",
        action.applied_at.isoformat() if action.applied_at else "",
        action.failure_reason,
        csv_text(action.message),
    ]


def csv_lines(request: HttpRequest) -> Iterator[str]:
    writer = csv.writer(EchoBuffer())
    yield writer.writerow(CSV_COLUMNS)
    rows = queries.scoped_actions(request.user).order_by("-created_at")
    for action in rows.iterator(chunk_size=500):
        yield writer.writerow(csv_row(action))


@require_GET
def actions_csv(request: HttpRequest) -> StreamingHttpResponse:
    """Export every scale action the user may see, newest first."""
    response = StreamingHttpResponse(csv_lines(request), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="scale-actions.csv"'
    return response


# Cycles ----------------------------------------------------------------------


@require_GET
def cycle_list(request: HttpRequest) -> HttpResponse:
    cycles = access.visible_cycles(request.user).defer("inputs", "outputs")
    page = Paginator(cycles.order_by("-started_at"), queries.CYCLES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    for cycle in page:
        cycle.duration_s = (
            (cycle.finished_at - cycle.started_at).total_seconds()
            if cycle.finished_at is not None
            else None
        )
    return render(
        request, "dashboard/cycle_list.html", page_context(request, page=page)
    )


@require_GET
def cycle_detail(request: HttpRequest, pk: int) -> HttpResponse:
    cycle = get_object_or_404(access.visible_cycles(request.user), pk=pk)
    decisions = queries.cycle_decisions(request.user, cycle)
    for decision in decisions:
        decision.explanation = explain.explain(decision, cycle.policy)
    context = page_context(
        request,
        cycle=cycle,
        samples=queries.cycle_samples(request.user, cycle),
        decisions=decisions,
        errors=queries.visible_errors(request.user, cycle),
        show_raw=access.is_superuser(request.user),
    )
    return render(request, "dashboard/cycle_detail.html", context)


# Audit -----------------------------------------------------------------------


@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    """List who changed what and when, with the values before and after."""
    rows = (
        access.visible_audit(request.user)
        .select_related("actor")
        .order_by("-at", "-id")
    )
    page = Paginator(rows, queries.AUDIT_PER_PAGE).get_page(request.GET.get("page"))
    entries = queries.audit_entries(page)
    return render(
        request,
        "dashboard/audit_list.html",
        page_context(request, page=page, entries=entries),
    )


# Vendored files --------------------------------------------------------------


# A year: the URL carries plotly's version, so a new version gets a new URL.
VENDOR_MAX_AGE_S = 365 * 24 * 3600


@require_GET
def plotly_js(request: HttpRequest) -> HttpResponseBase:
    """Serve plotly.js (MIT licence) from the installed plotly package.

    The response is cached for a year and sent gzip-compressed to browsers
    that accept it. A matching If-None-Match gets 304 without a body.
    """
    etag = f'"plotly-{vendor.plotly_version()}"'
    headers = {
        "Cache-Control": f"public, max-age={VENDOR_MAX_AGE_S}, immutable",
        "ETag": etag,
        "Vary": "Accept-Encoding",
    }
    if etag in request.headers.get("If-None-Match", ""):
        return HttpResponseNotModified(headers=headers)
    if accepts_gzip(request):
        response: HttpResponseBase = HttpResponse(
            vendor.plotly_js_gzip(), content_type="text/javascript", headers=headers
        )
        response["Content-Encoding"] = "gzip"
        return response
    response = FileResponse(
        vendor.plotly_js_path().open("rb"), content_type="text/javascript"
    )
    for name, value in headers.items():
        response[name] = value
    return response


def accepts_gzip(request: HttpRequest) -> bool:
    """Tell whether Accept-Encoding lists gzip with a quality above 0."""
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() != "gzip":
            continue
        quality = params.replace(" ", "").removeprefix("q=")
        try:
            return not params or float(quality) > 0
        except ValueError:
            return False
    return False


@login_not_required
@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Serve the console's icon at /favicon.ico, where browsers look by default."""
    body = finders.find("favicon.svg")
    if body is None:
        return HttpResponse(status=204)
    response = HttpResponse(Path(body).read_bytes(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
