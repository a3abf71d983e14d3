"""An operator starts a policy comparison in chromium and watches it finish.

The console runs on pytest-django's live server. Its Celery task goes
through an in-memory broker to a real Celery worker thread that consumes
only the `comparisons` queue, so the test also checks the task's routing.
The worker runs `fleetsim.compare` on 120 s of the Azure conversation
trace. Every request off loopback is blocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.browser.offline import signed_in_page
from tests.browser.test_approve_in_browser import (
    TIMEOUT_MS,
)
from wva_web.catalog.models import Membership, Role, Team
from wva_web.celery import app as celery_app
from wva_web.simulate import conf
from wva_web.simulate.models import ComparisonRun, RunStatus

PASSWORD = "compare-page-password"
POLICIES = ("hpa-kv", "wva")
# Milliseconds the page may take from the form to the figures table.
RUN_TIMEOUT_MS = 120_000
# Recorded in the page: every progress.json response, as [status, progress].
RECORD_PROGRESS = """
window.progressSeen = [];
const originalFetch = window.fetch;
window.fetch = (...args) => originalFetch(...args).then((response) => {
  if (String(args[0]).includes("progress.json")) {
    response.clone().json().then((data) => {
      window.progressSeen.push([data.status, data.progress]);
    });
  }
  return response;
});
"""

pytestmark = [pytest.mark.browser]


@pytest.fixture
def operator(transactional_db: None) -> User:
    user = User.objects.create_user("operator-1", password=PASSWORD)
    team = Team.objects.create(name="team-a")
    Membership.objects.create(team=team, user=user, role=Role.OPERATOR)
    return user


@pytest.fixture
def comparison_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run a Celery worker thread on the `comparisons` queue of a memory broker."""
    from celery.contrib.testing.worker import start_worker

    monkeypatch.setitem(celery_app.conf, "broker_url", "memory://")
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    # The app caches its connection and producer pools for the first broker
    # it used. Dropping them makes both sides of the test use the memory broker.
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        queues=[conf.QUEUE],
        shutdown_timeout=30,
    ) as worker:
        yield worker


@pytest.fixture
def page(
    live_server: Any, operator: User, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, list[str]]]:
    """Yield a signed-in page and the list of requests it tried off loopback."""
    # Playwright's sync API runs an event loop in this thread, and Django
    # rejects database calls from a thread with a running loop without this.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with signed_in_page(
        live_server.url, operator.username, PASSWORD, init_script=RECORD_PROGRESS
    ) as signed_in:
        yield signed_in


def fill_form(tab: Any) -> None:
    tab.select_option("#id_trace", "azure-conv")
    tab.fill("#id_scale", "1")
    tab.select_option("#id_scale_mode", "compress")
    tab.fill("#id_seed", "3")
    tab.fill("#id_duration_s", "120")
    for box in tab.locator('input[name="policies"]').all():
        if box.get_attribute("value") in POLICIES:
            box.check()
        else:
            box.uncheck()


def test_compare_page_runs_to_table_and_plot(
    live_server: Any, comparison_worker: Any, page: tuple[Any, list[str]]
) -> None:
    from playwright.sync_api import expect

    tab, blocked = page
    # given the comparison page, reached from the nav bar
    tab.click("nav >> text=Compare")
    tab.wait_for_url(f"{live_server.url}/compare/")
    # when the operator starts a two-policy run on 120 s of trace
    fill_form(tab)
    tab.click("#compare-submit")
    tab.wait_for_url(f"{live_server.url}/compare/*/")
    run = ComparisonRun.objects.get()
    # then the page shows the figures table without a reload
    expect(tab.locator("#figures")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    headers = tab.locator("#figures thead th[data-policy]").all_text_contents()
    assert headers == list(POLICIES)
    expect(tab.locator("#run-status")).to_have_text("succeeded")
    # and it saw the run in progress before it finished
    seen = tab.evaluate("() => window.progressSeen")
    statuses = [status for status, _ in seen]
    assert "running" in statuses, seen
    assert statuses[-1] == "succeeded", seen
    fractions = [fraction for status, fraction in seen if status == "running"]
    assert fractions == sorted(fractions), seen
    # and a plot draws inside its frame from the console's own plotly.js
    # (the frames load lazily, so the first one is scrolled into view)
    tab.locator("#plots iframe").first.scroll_into_view_if_needed()
    frame = tab.frame_locator("#plots iframe").first
    expect(frame.locator(".main-svg").first).to_be_visible(timeout=TIMEOUT_MS)
    assert blocked == []
