"""Pages render in chromium with every request off loopback blocked.

The overview draws its charts from the console's own plotly.js, with one
colour per accelerator and a legend, and /api/v1/docs/ draws Redoc from
drf-spectacular-sidecar's static files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.browser.offline import signed_in_page
from tests.dashboard.conftest import make_cycle, make_variant
from wva_web.catalog.models import Accelerator, Team
from wva_web.control.models import AcceleratorSample
from wva_web.dashboard import charts

PASSWORD = "offline-pages-password"
# Accelerators with a variant and samples; B200 has neither and gets no card.
USED = ("H100-80GB", "L4")

pytestmark = [pytest.mark.browser]


def make_accelerator(name: str) -> Accelerator:
    return Accelerator.objects.create(
        name=name,
        memory_gb=80,
        usd_per_gpu_hour=1.0,
        power_idle_w=50,
        power_mid_w=150,
        power_full_w=300,
        gpus_available=8,
    )


@pytest.fixture
def fleet(transactional_db: None) -> User:
    """Two accelerators in use with three cycles of samples, one unused."""
    team = Team.objects.create(name="team-a")
    start = timezone.now() - dt.timedelta(minutes=3)
    for name in USED:
        accelerator = make_accelerator(name)
        make_variant(f"llama-{name.lower()}", team, accelerator)
    make_accelerator("B200")
    for step in range(3):
        cycle = make_cycle(start + dt.timedelta(seconds=30 * step))
        for index, accelerator in enumerate(Accelerator.objects.filter(name__in=USED)):
            AcceleratorSample.objects.create(
                cycle=cycle,
                accelerator=accelerator,
                at=cycle.started_at,
                replicas=1 + index,
                ready_replicas=1 + index,
                gpus_used=1 + index,
                utilisation=0.2 + 0.1 * step,
                power_w=200.0 + 50 * index,
                usd_per_hour=2.0 + index,
            )
    return User.objects.create_superuser("admin", password=PASSWORD)


@pytest.fixture
def page(
    live_server: Any, fleet: User, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, list[str]]]:
    """Yield a signed-in page and the list of requests it tried off loopback."""
    # Playwright's sync API runs an event loop in this thread, and Django
    # rejects database calls from a thread with a running loop without this.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with signed_in_page(live_server.url, "admin", PASSWORD) as signed_in:
        yield signed_in


def test_overview_charts_offline(live_server: Any, page: tuple[Any, list[str]]) -> None:
    from playwright.sync_api import expect

    tab, blocked = page
    # when the overview loads with the network closed
    tab.goto(f"{live_server.url}/")
    # then plotly draws the four panels and one legend entry per accelerator
    expect(tab.locator("#chart-accelerators .main-svg").first).to_be_visible()
    legend = tab.locator("#chart-accelerators .legend .traces")
    expect(legend).to_have_count(len(USED))
    assert legend.all_text_contents() == list(USED)
    # and every trace of an accelerator has its fixed colour
    colours = tab.evaluate(
        "() => document.getElementById('chart-accelerators').data"
        ".map(t => [t.name, t.line.color])"
    )
    assert len(colours) == 4 * len(USED)
    assert {name: colour for name, colour in colours} == {
        name: charts.accelerator_colour(name) for name in USED
    }
    assert blocked == []


def test_overview_cards_even_offline(
    live_server: Any, page: tuple[Any, list[str]]
) -> None:
    tab, _ = page
    tab.goto(f"{live_server.url}/")
    cards = tab.locator("#accelerator-cards .card")
    names = cards.evaluate_all("cards => cards.map(c => c.dataset.accelerator)")
    widths = cards.evaluate_all(
        "cards => cards.map(c => Math.round(c.getBoundingClientRect().width))"
    )
    assert names == list(USED)
    assert max(widths) - min(widths) <= 1
    assert min(widths) >= 240


def test_api_docs_render_offline(live_server: Any, page: tuple[Any, list[str]]) -> None:
    from playwright.sync_api import expect

    tab, blocked = page
    # when the API docs load with the network closed
    tab.goto(f"{live_server.url}/api/v1/docs/")
    # then Redoc draws the schema's title and operations
    expect(tab.locator("h1", has_text="WVA console API")).to_be_visible()
    expect(tab.get_by_text("/api/v1/scale-actions/").first).to_be_attached()
    # and no script, style sheet or font was wanted from elsewhere
    # NOTE: Redoc's bundle links its own logo image from cdn.redoc.ly.
    assert [entry for entry in blocked if not entry.startswith("image ")] == []
