"""List endpoints: query counts, filters and the schema."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.actions.builders import make_accelerator, make_variant
from tests.actions.conftest import World
from wva_web.control import actions
from wva_web.control.models import ControlCycle, Decision, MetricSample, ScaleAction


@pytest.fixture
def busy(world: World) -> World:
    """Twelve more team-a variants, each with a decision, a sample and an action."""
    now = timezone.now()
    cycle = ControlCycle.objects.create(
        started_at=now, finished_at=now, policy="wva-v1"
    )
    l4 = make_accelerator("L4", 0.80)
    for index in range(12):
        accelerator = l4 if index % 2 else None
        variant = make_variant(
            world.team_a, f"variant-{index:02d}", accelerator=accelerator
        )
        Decision.objects.create(
            cycle=cycle,
            variant=variant,
            current_replicas=2,
            ready_replicas=2,
            target_replicas=3,
        )
        MetricSample.objects.create(
            cycle=cycle, variant=variant, pod="p0", sampled_at=now
        )
        actions.request_manual_action(world.u1, variant, 3)
    return world


def client_for(user: object) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "variants",
        "models",
        "scale-actions",
        "decisions",
        "cycles",
        "metric-samples",
        "audit-log",
        "accelerators",
    ],
)
def test_list_query_count_bounded(
    busy: World, path: str, django_assert_max_num_queries
) -> None:
    client = client_for(busy.u2)
    with django_assert_max_num_queries(6):
        response = client.get(f"/api/v1/{path}/")
    assert response.status_code == 200


def test_filter_actions_by_accelerator_name(busy: World) -> None:
    body = client_for(busy.u2).get("/api/v1/scale-actions/?accelerator=L4").json()
    assert body["count"] == 6


def test_filter_actions_by_state_and_date(busy: World) -> None:
    first = ScaleAction.objects.order_by("pk").first()
    actions.reject_action(first.pk, busy.u2)
    since = (timezone.now() - dt.timedelta(minutes=5)).isoformat()
    client = client_for(busy.u2)
    pending = client.get(
        "/api/v1/scale-actions/", {"state": "pending", "created_after": since}
    )
    rejected = client.get("/api/v1/scale-actions/", {"state": "rejected"})
    assert pending.json()["count"] == 11
    assert rejected.json()["count"] == 1


def test_filter_other_team_variant_id_empty(busy: World) -> None:
    query = {"variant": busy.variant_a.pk}
    body = client_for(busy.viewer_b).get("/api/v1/decisions/", query).json()
    assert body["count"] == 0


def test_schema_served(world: World) -> None:
    response = client_for(world.viewer_a).get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/scale-actions/{id}/approve/" in response.content


def test_docs_page_served(world: World) -> None:
    response = client_for(world.viewer_a).get("/api/v1/docs/")
    assert response.status_code == 200
