"""Pages of policy comparisons: the run list with its form, a run, its plots.

Any signed-in user sees every run. Starting one needs the operator role in
some team, which `runs.start_run` checks. The run page polls `progress.json`
and, once the run has finished, loads the figures table from `results/`
without reloading the page. Plots are `ComparisonPlot` rows, served with
their plotly.js script tag pointed at the console's own copy.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_http_methods

from wva_web.dashboard.views import page_context
from wva_web.simulate import conf, plotfiles, runs
from wva_web.simulate.forms import ComparisonForm
from wva_web.simulate.models import ComparisonPlot, ComparisonRun, RunStatus
from wva_web.simulate.results import ATTAINMENT_MARGIN, figure_rows

logger = logging.getLogger(__name__)

RUNS_PER_PAGE = 25
# Milliseconds between two polls of progress.json by the run page.
PROGRESS_POLL_MS = 1000
# A run queued longer than this many seconds shows a hint about the worker.
QUEUED_HINT_S = 30


@require_http_methods(["GET", "POST"])
def run_list(request: HttpRequest) -> HttpResponse:
    """List runs; POST starts one from the form."""
    if request.method == "POST":
        return _start(request)
    runs.fail_lost_runs()
    return _render_list(request, ComparisonForm())


def _start(request: HttpRequest) -> HttpResponse:
    if not runs.can_start(request.user):
        messages.error(
            request, "Not started: starting a comparison needs the operator role."
        )
        return _render_list(request, ComparisonForm(), status=403)
    form = ComparisonForm(request.POST)
    if not form.is_valid() or form.options is None:
        return _render_list(request, form, status=400)
    try:
        run = runs.start_run(request.user, form.options)
    except runs.RunError as exc:
        logger.info("comparison not started for %s: %s", request.user, exc)
        messages.error(request, f"Not started: {exc}")
        return _render_list(request, form, status=409)
    return HttpResponseRedirect(reverse("simulate:run-detail", args=[run.pk]))


def _render_list(
    request: HttpRequest, form: ComparisonForm, status: int = 200
) -> HttpResponse:
    queryset = runs.visible_runs(request.user).for_list()
    page = Paginator(queryset, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    context = page_context(
        request,
        page=page,
        form=form,
        can_start=runs.can_start(request.user),
        max_running=conf.max_running(),
        max_duration_s=conf.max_duration_s(),
    )
    return render(request, "simulate/run_list.html", context, status=status)


@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Render a run's page, or a 404 page in the console's layout when it is missing."""
    run = runs.visible_runs(request.user).filter(pk=pk).first()
    if run is None:
        context = page_context(request, pk=pk)
        return render(request, "simulate/run_missing.html", context, status=404)
    context = page_context(
        request,
        run=run,
        poll_ms=PROGRESS_POLL_MS,
        queued_hint_s=QUEUED_HINT_S,
        **results_context(run),
    )
    return render(request, "simulate/run_detail.html", context)


@require_GET
def run_results(request: HttpRequest, pk: int) -> HttpResponse:
    """Return the figures table and plots of a run as an HTML fragment."""
    run = get_object_or_404(runs.visible_runs(request.user), pk=pk)
    return render(
        request, "simulate/_results.html", {"run": run, **results_context(run)}
    )


def results_context(run: ComparisonRun) -> dict[str, Any]:
    policies = run.policies
    if run.status != RunStatus.SUCCEEDED:
        return {"policies": policies, "rows": [], "plots": []}
    return {
        "policies": policies,
        "attainment_margin_points": ATTAINMENT_MARGIN * 100,
        "rows": figure_rows(run.result, policies),
        "plots": [
            (plot.name, reverse("simulate:run-plot", args=[run.pk, plot.name]))
            for plot in ComparisonPlot.objects.filter(run=run).names()
        ],
    }


@require_GET
def run_progress(request: HttpRequest, pk: int) -> JsonResponse:
    """Return the run's status, progress and error for the polling page."""
    runs.fail_lost_runs()
    run = get_object_or_404(runs.visible_runs(request.user).defer("result"), pk=pk)
    return JsonResponse(progress_json(run))


def progress_json(run: ComparisonRun) -> dict[str, Any]:
    queued_for_s = None
    if run.status == RunStatus.QUEUED:
        queued_for_s = (timezone.now() - run.created_at).total_seconds()
    return {
        "id": run.pk,
        "status": run.status,
        "finished": run.finished,
        "progress": run.progress,
        "message": run.progress_message,
        "error": run.error,
        "queued_for_s": queued_for_s,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


@xframe_options_sameorigin
@require_GET
def run_plot(request: HttpRequest, pk: int, name: str) -> HttpResponse:
    """Serve one of the run's stored plots from the database."""
    run = get_object_or_404(runs.visible_runs(request.user).defer("result"), pk=pk)
    plot = ComparisonPlot.objects.filter(run=run, name=name).first()
    if plot is None:
        raise Http404(f"comparison run {run.pk} has no plot named {name!r}")
    return HttpResponse(
        plotfiles.offline_html(plot.html), content_type="text/html; charset=utf-8"
    )
