"""The audit page lists who changed what and when, scoped to the user's teams."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.utils import timezone

from tests.dashboard.conftest import World, make_action
from wva_web.control import actions
from wva_web.control.models import AuditLog


def audit_row(
    world: World, object_type: str, object_id: object, **fields: Any
) -> AuditLog:
    values: dict[str, Any] = {
        "at": world.now,
        "verb": "approve",
        "before": {"state": "pending"},
        "after": {"state": "approved"},
    }
    values.update(fields)
    return AuditLog.objects.create(
        object_type=object_type, object_id=str(object_id), **values
    )


def test_audit_page_shows_who_what_when(world: World) -> None:
    # given an approval of team a's action by approver_a
    action = make_action(world.alpha, 4, 5)
    row = audit_row(world, "scale_action", action.pk, actor=world.users["approver_a"])
    # when
    body = world.client("viewer_a").get("/audit/").content.decode()
    # then
    line = body.split(f'data-audit-id="{row.pk}"')[1].split("</tr>")[0]
    assert f"{world.now:%Y-%m-%d %H:%M:%S}" in line
    assert '<td class="actor">approver_a</td>' in line
    assert '<td class="verb">approve</td>' in line
    assert f'href="/actions/#action-{action.pk}">scale action {action.pk}</a>' in line
    assert "pending\n          → approved" in line


def test_audit_page_hides_other_team(world: World) -> None:
    # given an audit row about team b's action
    theirs = make_action(world.bravo, 2, 3)
    row = audit_row(world, "scale_action", theirs.pk)
    # when a viewer of team a opens the page
    body = world.client("viewer_a").get("/audit/").content.decode()
    # then
    assert f'data-audit-id="{row.pk}"' not in body
    assert "No audited change visible to you yet." in body


def test_audit_page_shows_other_team_to_superuser(world: World) -> None:
    theirs = make_action(world.bravo, 2, 3)
    row = audit_row(world, "scale_action", theirs.pk)
    body = world.client("root").get("/audit/").content.decode()
    assert f'data-audit-id="{row.pk}"' in body


def test_audit_page_lists_real_proposal(world: World) -> None:
    # given a proposal made through the action function, which writes the row
    action = actions.propose_action(world.alpha.pk, 4, 5, reasons=["scale_up:spare_kv"])
    # when
    body = world.client("viewer_a").get("/audit/").content.decode()
    # then a created row lists the values it set, with no arrow
    assert '<td class="actor">system</td>' in body
    assert f"scale action {action.pk}" in body
    field = 'data-field="to_replicas"><span class="muted">to_replicas:</span>'
    assert f"{field}\n          5" in body
    assert 'data-field="override_replicas"' not in body


def test_audit_page_links_variant(world: World) -> None:
    audit_row(
        world,
        "variant",
        world.alpha.pk,
        verb="mode",
        before={"mode": "auto"},
        after={"mode": "advisory"},
    )
    body = world.client("viewer_a").get("/audit/").content.decode()
    assert f'<a href="/variants/{world.alpha.pk}/">variant {world.alpha.pk}</a>' in body


def test_audit_page_shows_removed_value_as_none(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    audit_row(
        world,
        "scale_action",
        action.pk,
        before={"override_replicas": 3},
        after={"override_replicas": None},
    )
    body = world.client("viewer_a").get("/audit/").content.decode()
    assert "3\n          → none" in body


def test_audit_page_paginates_newest_first(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    last_year = timezone.now().replace(year=2025)
    older = audit_row(world, "scale_action", action.pk, at=last_year)
    newer = audit_row(world, "scale_action", action.pk)
    body = world.client("viewer_a").get("/audit/").content.decode()
    assert body.index(f'data-audit-id="{newer.pk}"') < body.index(
        f'data-audit-id="{older.pk}"'
    )
    assert "Page 1 of 1" in body


def test_nav_links_audit_page(world: World) -> None:
    body = world.client("viewer_a").get("/").content.decode()
    assert '<a href="/audit/">Audit</a>' in body


def test_audit_page_needs_login(db: None) -> None:
    response = Client().get("/audit/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
