"""List pages read each section in a fixed number of queries, whatever the row count."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.dashboard.conftest import World, make_action, make_sample, make_variant
from wva_web.control.models import ActionState, AuditLog, Decision, VariantState

# Session, user and the page's sections: 3 (CSV) to 11 (variant page) queries
# with twelve variants; one query per row would add at least 12.
MAX_QUERIES = 12
LIST_URLS = ["/", "/variants/", "/actions/", "/cycles/", "/audit/", "/live.json"]

MaxQueries = Callable[[int], AbstractContextManager[object]]


def add_rows(world: World, count: int, prefix: str = "extra") -> None:
    """Add `count` variants of team a, each with a state, samples, decision, actions."""
    for i in range(count):
        variant = make_variant(f"{prefix}-{i}", world.team_a, world.h100)
        make_sample(world.cycle, variant, f"{prefix}-{i}-pod", 0.5, 1.0)
        Decision.objects.create(
            cycle=world.cycle,
            variant=variant,
            current_replicas=1,
            ready_replicas=1,
            target_replicas=2,
            bound_by="max_replicas",
            message="wants 3, capped at 2 (max)",
        )
        VariantState.objects.create(
            variant=variant,
            updated_at=world.now,
            last_cycle=world.cycle,
            current_replicas=1,
            degraded=True,
        )
        requested = make_action(variant, 1, 2, requested_by=world.users["operator_a"])
        AuditLog.objects.create(
            at=world.now,
            actor=world.users["operator_a"],
            verb="propose",
            object_type="scale_action",
            object_id=str(requested.pk),
            after={"state": "pending", "to_replicas": 2},
        )
        make_action(
            variant,
            1,
            2,
            state=ActionState.FAILED,
            message="expected 1, found 3",
            decided_by=world.users["approver_a"],
        )


def count_queries(world: World, url: str) -> int:
    client = world.client("approver_a")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
    return len(queries)


@pytest.mark.parametrize("url", LIST_URLS + ["/actions.csv"])
def test_list_page_queries_do_not_grow(world: World, url: str) -> None:
    # given one extra variant with its rows
    add_rows(world, 1, "first")
    few = count_queries(world, url)
    # when eleven more are added
    add_rows(world, 11, "more")
    many = count_queries(world, url)
    # then
    assert many == few


@pytest.mark.parametrize("url", LIST_URLS)
def test_list_page_stays_under_query_budget(
    world: World, url: str, django_assert_max_num_queries: MaxQueries
) -> None:
    # given a dozen variants with states, samples, decisions and actions
    add_rows(world, 12)
    client = world.client("approver_a")
    # when / then
    with django_assert_max_num_queries(MAX_QUERIES):
        client.get(url)


def test_variant_detail_stays_under_query_budget(
    world: World, django_assert_max_num_queries: MaxQueries
) -> None:
    add_rows(world, 3)
    client = world.client("approver_a")
    with django_assert_max_num_queries(MAX_QUERIES):
        client.get(f"/variants/{world.alpha.pk}/")


def test_cycle_detail_stays_under_query_budget(
    world: World, django_assert_max_num_queries: MaxQueries
) -> None:
    add_rows(world, 12)
    client = world.client("approver_a")
    with django_assert_max_num_queries(MAX_QUERIES):
        client.get(f"/cycles/{world.cycle.pk}/")
