"""Every page renders for a viewer, and anonymous users are sent to the login page."""

from __future__ import annotations

import plotly
import pytest
from django.test import Client

from tests.dashboard.conftest import World, make_action


def page_urls(world: World) -> list[str]:
    return [
        "/",
        "/variants/",
        f"/variants/{world.alpha.pk}/",
        "/actions/",
        "/actions.csv",
        "/cycles/",
        f"/cycles/{world.cycle.pk}/",
        "/live.json",
    ]


def test_pages_render_for_viewer(world: World) -> None:
    # given a viewer of team a and one pending action
    make_action(world.alpha, 4, 5)
    client = world.client("viewer_a")
    # when / then every page answers 200
    for url in page_urls(world):
        response = client.get(url)
        assert response.status_code == 200, url


def test_pages_redirect_anonymous_to_login(world: World) -> None:
    client = Client()
    for url in page_urls(world):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/"), url


def test_overview_shows_accelerator_card(world: World) -> None:
    # when
    body = world.client("viewer_a").get("/").content.decode()
    # then: replicas ready/total, GPUs of budget, utilisation, power and cost
    assert "4 / 4" in body
    assert "4 / 8" in body
    assert "47.5%" in body
    assert "1,820 W" in body
    assert "$49.16/h" in body


def test_overview_unknown_budget_is_not_zero(world: World) -> None:
    body = world.client("viewer_a").get("/").content.decode()
    assert "GPU budget: unknown" in body


def test_overview_counts_pending_actions(world: World) -> None:
    # given two pending actions of team a and an applied one
    make_action(world.alpha, 4, 5)
    make_action(world.alpha, 4, 3)
    make_action(world.alpha, 4, 6, state="applied")
    # when
    body = world.client("viewer_a").get("/").content.decode()
    # then
    assert '<span id="pending-count" data-live="pending_actions">2</span>' in body


def test_overview_embeds_chart_without_plotly_library(world: World) -> None:
    body = world.client("viewer_a").get("/").content.decode()
    assert 'id="chart-accelerators"' in body
    script = f'<script src="/vendor/plotly.min.js?v={plotly.__version__}"></script>'
    assert script in body
    assert "Copyright 2012" not in body


def test_overview_shows_last_cycle(world: World) -> None:
    body = world.client("viewer_a").get("/").content.decode()
    assert f'<a href="/cycles/{world.cycle.pk}/">#{world.cycle.pk}</a>' in body
    assert 'id="last-cycle-status">ok<' in body


def test_plotly_js_served_locally(world: World) -> None:
    response = world.client("viewer_a").get("/vendor/plotly.min.js")
    head = b"".join(response.streaming_content)[:200]
    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript"
    assert b"Licensed under the MIT license" in head


def test_nav_links_every_section(world: World) -> None:
    body = world.client("root").get("/").content.decode()
    for href in (
        'href="/"',
        'href="/variants/"',
        'href="/actions/"',
        'href="/cycles/"',
        'href="/api/v1/"',
        'href="/admin/"',
        'id="logout"',
    ):
        assert href in body, href


def test_nav_hides_admin_for_non_staff(world: World) -> None:
    body = world.client("viewer_a").get("/").content.decode()
    assert 'href="/admin/"' not in body


def test_login_page_has_form(db: None) -> None:
    body = Client().get("/login/").content.decode()
    assert 'id="login-form"' in body
    assert 'name="username"' in body


@pytest.mark.parametrize("url", ["/variants/999999/", "/cycles/999999/"])
def test_unknown_ids_are_404(world: World, url: str) -> None:
    assert world.client("viewer_a").get(url).status_code == 404
