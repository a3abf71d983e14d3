"""A user without the role gets 403 on scale actions, whatever the body holds."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.actions.builders import make_user
from tests.actions.conftest import World
from wva_web.catalog.models import Membership
from wva_web.control import actions
from wva_web.control.models import ActionState, ScaleAction


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post(user: User, path: str, body: object) -> int:
    response = client_for(user).post(f"/api/v1/{path}", body, format="json")
    return response.status_code


@pytest.mark.parametrize(
    "body",
    [{"replicas": -1}, {"replicas": "many"}, {}, {"duration_s": 0}],
)
def test_viewer_override_invalid_body_403(world: World, body: object) -> None:
    # given a pending proposal of the viewer's team
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    # when the viewer overrides it with an invalid body
    code = post(world.viewer_a, f"scale-actions/{proposal.pk}/override/", body)
    # then the role check runs before validation and returns 403
    assert code == 403
    proposal.refresh_from_db()
    assert proposal.state == ActionState.PENDING


def test_viewer_approve_with_body_403(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    code = post(world.viewer_a, f"scale-actions/{proposal.pk}/approve/", [1, 2])
    assert code == 403


def test_viewer_reject_long_message_403(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    body = {"message": "x" * 5000}
    code = post(world.viewer_a, f"scale-actions/{proposal.pk}/reject/", body)
    assert code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"to_replicas": -1},
        {"to_replicas": "many"},
        {},
        {"variant": "abc", "to_replicas": 3},
    ],
)
def test_viewer_create_invalid_body_403(world: World, body: dict) -> None:
    body = {"variant": world.variant_a.pk, **body}
    code = post(world.viewer_a, "scale-actions/", body)
    assert code == 403
    assert ScaleAction.objects.count() == 0


def test_operator_elsewhere_create_invalid_body_403(world: World) -> None:
    # given a user who is an operator in team b but only a viewer in team a
    mixed = make_user("mixed", world.team_b, "operator")
    Membership.objects.create(team=world.team_a, user=mixed, role="viewer")
    # when they request an invalid count on team a's variant
    body = {"variant": world.variant_a.pk, "to_replicas": -1}
    code = post(mixed, "scale-actions/", body)
    # then the role check in the variant's team runs before the range check
    assert code == 403


def test_operator_create_invalid_body_400(world: World) -> None:
    body = {"variant": world.variant_a.pk, "to_replicas": -1}
    code = post(world.u1, "scale-actions/", body)
    assert code == 400


def test_approver_override_invalid_body_400(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    code = post(world.u2, f"scale-actions/{proposal.pk}/override/", {"replicas": -1})
    assert code == 400


def test_requester_rejects_own_with_bad_body_400(world: World) -> None:
    own = actions.request_manual_action(world.u1, world.variant_a, 4)
    body = {"message": "x" * 5000}
    code = post(world.u1, f"scale-actions/{own.pk}/reject/", body)
    assert code == 400


def test_other_team_override_invalid_body_404(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    code = post(world.u3, f"scale-actions/{proposal.pk}/override/", {"replicas": -1})
    assert code == 404


def test_viewer_override_403_names_role(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    response = client_for(world.viewer_a).post(
        f"/api/v1/scale-actions/{proposal.pk}/override/", {}, format="json"
    )
    detail = response.json()["detail"]
    assert detail == "override needs the approver role in team team-a"
