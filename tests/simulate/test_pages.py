"""The comparison pages: the form by role, starting a run, messages, results."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from django.utils.html import escape

from tests.simulate.conftest import SHORT, People, add_plot, make_run
from wva_web.control.models import AuditLog
from wva_web.dashboard.queries import audit_object
from wva_web.simulate import runs
from wva_web.simulate.models import ComparisonRun, RunStatus
from wva_web.simulate.options import POLICIES, POLICY_DESCRIPTIONS

LIST_URL = "/compare/"
VALID_FORM = {
    "trace": "azure-conv",
    "scale": "0.5",
    "scale_mode": "compress",
    "fleet": "",
    "policies": ["hpa-kv", "wva"],
    "seed": "3",
    "duration_s": "60",
}
RESULT = {
    "duration_s": 60.0,
    "policies": {
        "hpa-kv": {
            "goodput_rps": 0.9,
            "goodput_tokens_per_s": 110.0,
            "slo_attainment": 0.95,
            "failed_requests": 4,
            "failures_by_cause": {"timeout": 3, "lost_to_scale_down": 1},
            "ttft_p99_s": 2.5,
            "itl_p99_s": 0.07,
            "gpu_hours": 0.1,
            "usd": 0.5,
            "kwh": 0.02,
            "replica_changes": 4,
            "reversals": 2,
        },
        "wva": {
            "goodput_rps": 1.0,
            "goodput_tokens_per_s": 120.0,
            "slo_attainment": 1.0,
            "failed_requests": 0,
            "failures_by_cause": {"timeout": 0, "lost_to_scale_down": 0},
            "ttft_p99_s": 1.5,
            "itl_p99_s": None,
            "gpu_hours": 0.08,
            "usd": 0.4,
            "kwh": 0.01,
            "replica_changes": 3,
            "reversals": 0,
        },
    },
}


def test_nav_bar_links_compare_page(people: People) -> None:
    response = people.client("viewer").get("/")
    assert b'href="/compare/"' in response.content


def test_list_needs_login(people: People) -> None:
    from django.test import Client

    response = Client().get(LIST_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize(
    ("name", "has_form"),
    [("viewer", False), ("outsider", False), ("operator", True), ("root", True)],
)
def test_list_form_by_role(people: People, name: str, has_form: bool) -> None:
    make_run(people.users["operator"])
    response = people.client(name).get(LIST_URL)
    assert response.status_code == 200
    assert (b'id="compare-form"' in response.content) is has_form
    assert b'data-run-id="' in response.content


def test_list_query_count(people: People, django_assert_max_num_queries: Any) -> None:
    for _ in range(5):
        make_run(people.users["operator"], status=RunStatus.SUCCEEDED, result=RESULT)
    client = people.client("viewer")
    client.get(LIST_URL)
    with django_assert_max_num_queries(12):
        response = client.get(LIST_URL)
    assert response.content.count(b'data-run-id="') == 5


def test_form_shows_defaults_and_descriptions(people: People) -> None:
    text = people.client("operator").get(LIST_URL).content.decode()
    assert 'placeholder="1"' in text
    assert 'placeholder="600"' in text
    assert "Seconds of scaled trace, 60 to 3600. Empty means the default, 600." in text
    assert "Load factor above 0, at most 10. Empty means the default, 1." in text
    assert "0 to 4294967295. Empty means the default, 1." in text
    for name in POLICIES:
        assert f'data-policy="{name}"' in text, name
    assert escape(POLICY_DESCRIPTIONS["oracle"]) in text
    assert escape(POLICY_DESCRIPTIONS["hpa-kv"]) in text


def test_form_empty_fields_take_defaults(
    people: People, django_capture_on_commit_callbacks: Any
) -> None:
    form = {**VALID_FORM, "scale": "", "seed": "", "duration_s": ""}
    with django_capture_on_commit_callbacks():
        response = people.client("operator").post(LIST_URL, form)
    assert response.status_code == 302
    run = ComparisonRun.objects.get()
    assert run.options["scale"] == 1.0
    assert run.options["seed"] == 1
    assert run.options["duration_s"] == 600.0


def test_viewer_cannot_start(people: People) -> None:
    response = people.client("viewer").post(LIST_URL, VALID_FORM)
    assert response.status_code == 403
    assert b"needs the operator role" in response.content
    assert not ComparisonRun.objects.exists()


def test_operator_starts_run(
    people: People, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = people.client("operator").post(LIST_URL, VALID_FORM)
    run = ComparisonRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("simulate:run-detail", args=[run.pk])
    assert run.options == SHORT.to_json()
    assert len(callbacks) == 1


def test_form_shows_messages_naming_values(people: People) -> None:
    form = {**VALID_FORM, "scale": "50", "duration_s": "5", "policies": []}
    response = people.client("operator").post(LIST_URL, form)
    assert response.status_code == 400
    text = response.content.decode()
    assert "scale 50 is out of range: use a factor above 0 and at most 10" in text
    assert "duration 5 s is out of range: use 60 to 3600 s" in text
    assert "no policy selected" in text
    assert not ComparisonRun.objects.exists()


def test_form_rejects_unknown_policy(people: People) -> None:
    form = {**VALID_FORM, "policies": ["wva", "keda"]}
    response = people.client("operator").post(LIST_URL, form)
    assert response.status_code == 400
    assert "unknown policy &#x27;keda&#x27;" in response.content.decode()


def test_form_start_over_limit(people: People, settings: Any) -> None:
    settings.WVA_COMPARE_MAX_QUEUED = 0
    make_run(people.users["operator"])
    response = people.client("operator").post(LIST_URL, VALID_FORM)
    assert response.status_code == 409
    assert b"already queued or running" in response.content
    assert ComparisonRun.objects.count() == 1


def test_detail_of_queued_run_polls(people: People) -> None:
    run = make_run(people.users["operator"])
    response = people.client("viewer").get(f"/compare/{run.pk}/")
    text = response.content.decode()
    assert response.status_code == 200
    assert f'data-progress-url="/compare/{run.pk}/progress.json"' in text
    assert 'id="run-progress-bar"' in text
    assert "simulate/compare.js" in text
    assert 'id="figures"' not in text


def test_detail_missing_run_404(people: People) -> None:
    response = people.client("viewer").get("/compare/9999/")
    text = response.content.decode()
    assert response.status_code == 404
    assert "Comparison run 9999 does not exist." in text
    assert '<a href="/compare/">All comparisons</a>' in text
    page_top = text.split('id="run-missing"')[0]
    assert 'href="/compare/"' in page_top, "navigation bar missing"


def test_progress_json_of_running_run(people: People) -> None:
    run = make_run(
        people.users["operator"],
        status=RunStatus.RUNNING,
        progress=0.25,
        progress_message="hpa-kv",
    )
    data = people.client("viewer").get(f"/compare/{run.pk}/progress.json").json()
    assert data["status"] == "running"
    assert data["finished"] is False
    assert data["progress"] == 0.25
    assert data["message"] == "hpa-kv"
    assert data["queued_for_s"] is None


def test_progress_json_of_queued_run(people: People) -> None:
    run = make_run(people.users["operator"])
    data = people.client("viewer").get(f"/compare/{run.pk}/progress.json").json()
    assert data["status"] == "queued"
    assert data["queued_for_s"] >= 0


def test_failed_run_shows_error(people: People) -> None:
    run = make_run(
        people.users["operator"],
        status=RunStatus.FAILED,
        error="ValueError: fleet file not found: data/gone.json",
    )
    for url in (f"/compare/{run.pk}/", f"/compare/{run.pk}/results/"):
        text = people.client("viewer").get(url).content.decode()
        assert 'id="run-error"' in text, url
        assert "fleet file not found: data/gone.json" in text, url


def test_results_table_side_by_side(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED, result=RESULT)
    response = people.client("viewer").get(f"/compare/{run.pk}/results/")
    text = response.content.decode()
    assert '<th class="num" data-policy="hpa-kv">hpa-kv</th>' in text
    assert '<th class="num" data-policy="wva">wva</th>' in text
    assert '<td class="num">0.900</td><td class="num best">1.000</td>' in text
    assert '<td class="num best">0</td>' in text
    assert "failed: timeout" in text
    assert '<td class="num best">0.0700</td><td class="num">n/a</td>' in text


def test_results_cost_best_needs_attainment(people: People) -> None:
    cheap = {**RESULT["policies"]["hpa-kv"], "slo_attainment": 0.5, "usd": 0.1}
    result = {**RESULT, "policies": {**RESULT["policies"], "hpa-kv": cheap}}
    run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED, result=result)
    text = people.client("viewer").get(f"/compare/{run.pk}/results/").content.decode()
    usd_row = text.split('data-figure="usd"')[1].split("</tr>")[0]
    assert '<td class="num">0.10</td><td class="num best">0.40</td>' in usd_row
    note = " ".join(text.split('id="figures-note">')[1].split("</p>")[0].split())
    assert "within 1 percentage point of the highest in this run" in note


def test_plot_served_with_local_plotly(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED, result=RESULT)
    add_plot(
        run,
        "replicas.html",
        '<html><head><script charset="utf-8" '
        'src="https://cdn.plot.ly/plotly-3.0.1.min.js" integrity="sha256-x" '
        'crossorigin="anonymous"></script></head><body>chart</body></html>',
    )
    response = people.client("viewer").get(f"/compare/{run.pk}/plots/replicas.html")
    text = response.content.decode()
    assert response.status_code == 200
    assert "cdn.plot.ly" not in text
    assert '<script charset="utf-8" src="/vendor/plotly.min.js?v=' in text
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    page = people.client("viewer").get(f"/compare/{run.pk}/").content.decode()
    assert f'<iframe src="/compare/{run.pk}/plots/replicas.html"' in page


@pytest.mark.parametrize("name", ["other.html", "..%2Fsecret.html", "%2E%2E"])
def test_plot_unlisted_name_404(people: People, name: str) -> None:
    run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED)
    add_plot(run, "replicas.html", "<html>chart</html>")
    response = people.client("viewer").get(f"/compare/{run.pk}/plots/{name}")
    assert response.status_code == 404


def test_plot_of_other_run_404(people: People) -> None:
    first = make_run(people.users["operator"], status=RunStatus.SUCCEEDED)
    second = make_run(people.users["operator"], status=RunStatus.SUCCEEDED)
    add_plot(first, "replicas.html", "<html>first</html>")
    response = people.client("viewer").get(f"/compare/{second.pk}/plots/replicas.html")
    assert response.status_code == 404


def test_plots_listed_in_write_order(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED, result=RESULT)
    for name in ("replicas.html", "load.html", "failures.html"):
        add_plot(run, name, f"<html>{name}</html>")
    text = people.client("viewer").get(f"/compare/{run.pk}/results/").content.decode()
    positions = [
        text.index(f'src="/compare/{run.pk}/plots/{name}"')
        for name in ("replicas.html", "load.html", "failures.html")
    ]
    assert positions == sorted(positions)


def test_plot_needs_login(people: People) -> None:
    from django.test import Client

    run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED)
    response = Client().get(f"/compare/{run.pk}/plots/replicas.html")
    assert response.status_code == 302


def test_audit_links_run_with_trace_and_policies(people: People) -> None:
    run = runs.start_run(people.users["operator"], SHORT)
    text = people.client("operator").get("/audit/").content.decode()
    link = (
        f'<a href="/compare/{run.pk}/">comparison run {run.pk} '
        "(azure-conv: hpa-kv, wva)</a>"
    )
    assert link in text


def test_audit_label_without_options() -> None:
    row = AuditLog(object_type="comparison_run", object_id="12", after=None)
    assert audit_object(row) == ("comparison run 12", "/compare/12/")
