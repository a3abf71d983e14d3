"""Schema access, page sizes and the large JSON fields of list responses."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from tests.actions.conftest import World
from wva_web.api.pagination import MAX_PAGE_SIZE
from wva_web.control.models import ControlCycle, Decision, MetricSample


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize("path", ["/api/v1/schema/", "/api/v1/docs/"])
def test_schema_pages_anonymous_rejected(world: World, path: str) -> None:
    response = APIClient().get(path)
    assert response.status_code in (401, 403)


@pytest.mark.parametrize("path", ["/api/v1/schema/", "/api/v1/docs/"])
def test_schema_pages_signed_in_200(world: World, path: str) -> None:
    response = client_for(world.viewer_b).get(path)
    assert response.status_code == 200


@pytest.fixture
def many_samples(world: World) -> int:
    """Store 210 samples of team a's variant; returns the count."""
    now = timezone.now()
    cycle = ControlCycle.objects.create(started_at=now, finished_at=now, policy="wva")
    count = MAX_PAGE_SIZE + 10
    MetricSample.objects.bulk_create(
        MetricSample(
            cycle=cycle, variant=world.variant_a, pod=f"pod-{i:03d}", sampled_at=now
        )
        for i in range(count)
    )
    return count


def test_page_size_parameter_honoured(world: World, many_samples: int) -> None:
    body = client_for(world.u1).get("/api/v1/metric-samples/?page_size=7").json()
    assert body["count"] == many_samples
    assert len(body["results"]) == 7


def test_page_size_capped_at_max(world: World, many_samples: int) -> None:
    body = client_for(world.u1).get("/api/v1/metric-samples/?page_size=5000").json()
    assert len(body["results"]) == MAX_PAGE_SIZE


def test_default_page_size_50(world: World, many_samples: int) -> None:
    body = client_for(world.u1).get("/api/v1/metric-samples/").json()
    assert len(body["results"]) == 50


@pytest.fixture
def big_cycle(world: World) -> ControlCycle:
    now = timezone.now()
    cycle = ControlCycle.objects.create(
        started_at=now,
        finished_at=now,
        policy="wva-v1",
        inputs={"pods": ["p" * 100] * 50},
        outputs={"targets": list(range(500))},
    )
    Decision.objects.create(
        cycle=cycle,
        variant=world.variant_a,
        current_replicas=2,
        ready_replicas=2,
        target_replicas=3,
        analysis={"wanted_replicas": 3},
    )
    return cycle


def test_cycle_list_omits_inputs_and_outputs(
    world: World, big_cycle: ControlCycle
) -> None:
    row = client_for(world.superuser).get("/api/v1/cycles/").json()["results"][0]
    assert "inputs" not in row
    assert "outputs" not in row
    assert "analysis" not in row["decisions"][0]
    assert row["decisions"][0]["target_replicas"] == 3


def test_cycle_list_expand_includes_inputs(
    world: World, big_cycle: ControlCycle
) -> None:
    body = client_for(world.superuser).get("/api/v1/cycles/?expand=1").json()
    row = body["results"][0]
    assert row["outputs"]["targets"][-1] == 499
    assert row["decisions"][0]["analysis"] == {"wanted_replicas": 3}


def test_cycle_detail_includes_inputs(world: World, big_cycle: ControlCycle) -> None:
    row = client_for(world.superuser).get(f"/api/v1/cycles/{big_cycle.pk}/").json()
    assert len(row["inputs"]["pods"]) == 50
    assert row["decisions"][0]["analysis"] == {"wanted_replicas": 3}


def test_decision_list_omits_analysis(world: World, big_cycle: ControlCycle) -> None:
    list_row = client_for(world.u1).get("/api/v1/decisions/").json()["results"][0]
    detail = client_for(world.u1).get(f"/api/v1/decisions/{list_row['id']}/").json()
    assert "analysis" not in list_row
    assert detail["analysis"] == {"wanted_replicas": 3}


def test_cycle_list_smaller_than_expanded(
    world: World, big_cycle: ControlCycle
) -> None:
    client = client_for(world.superuser)
    short = client.get("/api/v1/cycles/").content
    full = client.get("/api/v1/cycles/?expand=1").content
    assert len(short) * 10 < len(full)
