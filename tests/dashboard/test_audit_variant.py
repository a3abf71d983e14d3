"""Audit rows about a scale action or a variant name the variant."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.dashboard.conftest import World, make_action
from wva_web.control.models import AuditLog


def audit_row(world: World, object_type: str, object_id: object) -> AuditLog:
    return AuditLog.objects.create(
        at=world.now,
        verb="approve",
        object_type=object_type,
        object_id=str(object_id),
        before={"state": "pending"},
        after={"state": "approved"},
    )


def object_cell(body: str, row: AuditLog) -> str:
    line = body.split(f'data-audit-id="{row.pk}"')[1].split("</tr>")[0]
    return line.split('<td class="object">')[1].split("</td>")[0]


def test_scale_action_row_names_variant(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    row = audit_row(world, "scale_action", action.pk)
    body = world.client("viewer_a").get("/audit/").content.decode()
    cell = object_cell(body, row)
    assert f">scale action {action.pk}</a>" in cell
    assert f'(variant <a href="/variants/{world.alpha.pk}/">alpha-h100</a>)' in cell


def test_variant_row_names_variant(world: World) -> None:
    row = audit_row(world, "variant", world.alpha.pk)
    body = world.client("viewer_a").get("/audit/").content.decode()
    assert ">alpha-h100</a>)" in object_cell(body, row)


def test_deleted_action_keeps_label(world: World) -> None:
    row = audit_row(world, "scale_action", 999999)
    body = world.client("root").get("/audit/").content.decode()
    cell = object_cell(body, row)
    assert "scale action 999999" in cell
    assert "(variant" not in cell


def test_variant_names_take_constant_queries(world: World) -> None:
    # Given one page with a single audit row, then one with 20 rows.
    client = world.client("viewer_a")
    audit_row(world, "scale_action", make_action(world.alpha, 4, 5).pk)
    with CaptureQueriesContext(connection) as few:
        client.get("/audit/")
    for _ in range(19):
        action = make_action(world.alpha, 4, 5)
        audit_row(world, "scale_action", action.pk)
    with CaptureQueriesContext(connection) as many:
        client.get("/audit/")
    assert len(many) == len(few)
