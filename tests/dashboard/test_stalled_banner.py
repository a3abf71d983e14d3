"""The banner on every page when control cycles have stopped finishing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.dashboard.conftest import World
from wva_web.control.models import ControlCycle
from wva_web.dashboard import status

PAGES = ["/", "/variants/", "/actions/", "/cycles/", "/audit/"]


def age_last_cycle(world: World, seconds: float) -> None:
    finished = timezone.now() - dt.timedelta(seconds=seconds)
    ControlCycle.objects.update(started_at=finished, finished_at=finished)


@pytest.mark.parametrize("page", PAGES)
def test_banner_shown_after_three_periods(world: World, page: str) -> None:
    age_last_cycle(world, 120)
    body = world.client("viewer_a").get(page).content.decode()
    assert 'id="stalled-cycles-banner"' in body
    assert "No control cycle has finished for 12" in body
    assert "check that the Celery worker and beat are running" in body


@pytest.mark.parametrize("page", PAGES)
def test_banner_hidden_while_cycles_run(world: World, page: str) -> None:
    age_last_cycle(world, 60)
    body = world.client("viewer_a").get(page).content.decode()
    assert 'id="stalled-cycles-banner"' not in body


def test_banner_follows_cycle_period(world: World, settings: object) -> None:
    settings.WVA_CYCLE_PERIOD_S = 10  # type: ignore[attr-defined]
    age_last_cycle(world, 45)
    body = world.client("viewer_a").get("/").content.decode()
    assert "No control cycle has finished for 4" in body


def test_banner_seconds_exact() -> None:
    now = timezone.now()
    banner = status.stalled_cycles_banner(now - dt.timedelta(seconds=91), now)
    assert banner is not None
    assert banner.text.startswith("No control cycle has finished for 91 s:")


def test_banner_none_at_three_periods() -> None:
    now = timezone.now()
    assert status.stalled_cycles_banner(now - dt.timedelta(seconds=90), now) is None


def test_banner_none_without_any_cycle() -> None:
    assert status.stalled_cycles_banner(None) is None
