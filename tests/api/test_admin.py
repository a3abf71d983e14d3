"""Admin pages: control records are read-only, decisions go through the actions."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.actions.conftest import World
from wva_web.control import actions
from wva_web.control.models import ActionState, AuditLog

ADMIN_PAGES = [
    "catalog/team",
    "catalog/accelerator",
    "catalog/serviceclass",
    "catalog/inferencemodel",
    "catalog/variant",
    "control/controlcycle",
    "control/metricsample",
    "control/acceleratorsample",
    "control/decision",
    "control/scaleaction",
    "control/auditlog",
    "control/variantstate",
    "control/cyclelock",
]


def admin_client(world: World) -> Client:
    client = Client()
    client.force_login(world.superuser)
    return client


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_admin_changelist_loads(world: World, page: str) -> None:
    actions.propose_action(world.variant_a.pk, 2, 3)
    response = admin_client(world).get(f"/admin/{page}/")
    assert response.status_code == 200


def test_admin_scale_action_not_addable(world: World) -> None:
    response = admin_client(world).get("/admin/control/scaleaction/add/")
    assert response.status_code == 403


def test_admin_approve_calls_action_function(world: World, queued: list[int]) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    response = admin_client(world).post(
        "/admin/control/scaleaction/",
        {"action": "approve_selected", "_selected_action": [proposal.pk]},
    )
    proposal.refresh_from_db()
    assert response.status_code == 302
    assert proposal.state == ActionState.APPROVED
    assert AuditLog.objects.filter(verb="approve", actor=world.superuser).count() == 1


def test_admin_approve_own_request_refused(world: World, queued: list[int]) -> None:
    own = actions.request_manual_action(world.superuser, world.variant_a, 4)
    admin_client(world).post(
        "/admin/control/scaleaction/",
        {"action": "approve_selected", "_selected_action": [own.pk]},
    )
    own.refresh_from_db()
    assert own.state == ActionState.PENDING
