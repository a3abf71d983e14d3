"""Roles and team scoping of the REST API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.actions.builders import FakeActuator
from tests.actions.conftest import World
from wva_web.control import actions
from wva_web.control.models import (
    ActionState,
    AuditLog,
    ControlCycle,
    Decision,
    MetricSample,
    ScaleAction,
)


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def approve(user: User, action: ScaleAction) -> int:
    response = client_for(user).post(f"/api/v1/scale-actions/{action.pk}/approve/")
    return response.status_code


# Approval scope and self-approval.


def test_operator_approves_own_request_403(world: World, queued: list[int]) -> None:
    own = actions.request_manual_action(world.u1, world.variant_a, 8)
    assert approve(world.u1, own) == 403
    own.refresh_from_db()
    assert own.state == ActionState.PENDING
    assert queued == []


def test_operator_rejects_own_request_200(world: World) -> None:
    own = actions.request_manual_action(world.u1, world.variant_a, 8)
    response = client_for(world.u1).post(f"/api/v1/scale-actions/{own.pk}/reject/")
    assert response.status_code == 200
    assert response.json()["state"] == "rejected"


def test_team_approver_approves_request_200(
    world: World, queued: list[int], django_capture_on_commit_callbacks
) -> None:
    request = actions.request_manual_action(world.u1, world.variant_a, 8)
    with django_capture_on_commit_callbacks(execute=True):
        code = approve(world.u2, request)
    assert code == 200
    assert queued == [request.pk]


def test_other_team_approver_gets_404(world: World, queued: list[int]) -> None:
    request = actions.request_manual_action(world.u1, world.variant_a, 8)
    assert approve(world.u3, request) == 404
    request.refresh_from_db()
    assert request.state == ActionState.PENDING


def test_team_approver_approves_system_proposal_200(
    world: World, queued: list[int]
) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3, reasons=["scale_up"])
    assert approve(world.u2, proposal) == 200


@override_settings(WVA_FOUR_EYES=True)
def test_superuser_own_request_with_four_eyes_403(
    world: World, queued: list[int]
) -> None:
    own = actions.request_manual_action(world.superuser, world.variant_a, 4)
    assert approve(world.superuser, own) == 403
    assert queued == []


def test_viewer_approves_403(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    assert approve(world.viewer_a, proposal) == 403


def test_action_card_shows_cost_change(world: World) -> None:
    # given A on H100-80GB at 12.29 USD per GPU-hour, asked to go 2 -> 8
    request = actions.request_manual_action(world.u1, world.variant_a, 8)
    body = client_for(world.u2).get(f"/api/v1/scale-actions/{request.pk}/").json()
    assert body["usd_per_hour_change"] == pytest.approx(6 * 12.29)


def test_approve_twice_409_names_state(world: World, queued: list[int]) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    approve(world.u2, proposal)
    response = client_for(world.superuser).post(
        f"/api/v1/scale-actions/{proposal.pk}/approve/"
    )
    assert response.status_code == 409
    assert "already approved" in response.json()["detail"]


def test_approve_superseded_409(world: World) -> None:
    older = actions.propose_action(world.variant_a.pk, 2, 3)
    actions.propose_action(world.variant_a.pk, 2, 5)
    response = client_for(world.u2).post(f"/api/v1/scale-actions/{older.pk}/approve/")
    assert response.status_code == 409
    assert "superseded" in response.json()["detail"]


def test_override_out_of_bounds_400(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    response = client_for(world.u2).post(
        f"/api/v1/scale-actions/{proposal.pk}/override/",
        {"replicas": 11},
        format="json",
    )
    assert response.status_code == 400
    assert "max_replicas (10)" in response.json()["replicas"][0]


def test_override_with_duration_200(world: World, queued: list[int]) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    response = client_for(world.u2).post(
        f"/api/v1/scale-actions/{proposal.pk}/override/",
        {"replicas": 5, "duration_s": 900},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["effective_replicas"] == 5


# Team scoping on list, detail and create.


def test_viewer_lists_own_team_actions_only(world: World) -> None:
    for to in (3, 4, 5):
        actions.request_manual_action(world.u1, world.variant_a, to)
    mine = actions.propose_action(world.variant_b.pk, 3, 4)
    body = client_for(world.viewer_b).get("/api/v1/scale-actions/").json()
    assert body["count"] == 1
    assert [row["id"] for row in body["results"]] == [mine.pk]


def test_viewer_reads_other_team_action_404(world: World) -> None:
    theirs = actions.propose_action(world.variant_a.pk, 2, 3)
    response = client_for(world.viewer_b).get(f"/api/v1/scale-actions/{theirs.pk}/")
    assert response.status_code == 404


def test_create_on_other_team_variant_400(world: World) -> None:
    response = client_for(world.u3).post(
        "/api/v1/scale-actions/",
        {"variant": world.variant_a.pk, "to_replicas": 4},
        format="json",
    )
    assert response.status_code == 400
    assert "not found" in response.json()["variant"][0]
    assert ScaleAction.objects.count() == 0


def test_create_manual_request_201(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/scale-actions/",
        {"variant": world.variant_a.pk, "to_replicas": 4},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["from_replicas"] == 2
    assert response.json()["requested_by"] == "u1"


def test_viewer_create_manual_request_403(world: World) -> None:
    response = client_for(world.viewer_a).post(
        "/api/v1/scale-actions/",
        {"variant": world.variant_a.pk, "to_replicas": 4},
        format="json",
    )
    assert response.status_code == 403


def test_patch_other_team_variant_404(world: World) -> None:
    response = client_for(world.viewer_b).patch(
        f"/api/v1/variants/{world.variant_a.pk}/", {"max_replicas": 6}, format="json"
    )
    assert response.status_code == 404


def test_operator_patch_other_team_variant_404(world: World) -> None:
    response = client_for(world.u3).patch(
        f"/api/v1/variants/{world.variant_a.pk}/", {"max_replicas": 6}, format="json"
    )
    assert response.status_code == 404


def test_viewer_patch_own_variant_403(world: World) -> None:
    response = client_for(world.viewer_a).patch(
        f"/api/v1/variants/{world.variant_a.pk}/", {"max_replicas": 6}, format="json"
    )
    assert response.status_code == 403


def test_operator_patch_own_variant_200(world: World) -> None:
    response = client_for(world.u1).patch(
        f"/api/v1/variants/{world.variant_a.pk}/", {"max_replicas": 6}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["max_replicas"] == 6


def record_cycle(world: World) -> None:
    """Store one cycle with a decision and a sample for each team's variant."""
    now = timezone.now()
    cycle = ControlCycle.objects.create(
        started_at=now, finished_at=now, policy="wva-v1"
    )
    for variant in (world.variant_a, world.variant_b):
        Decision.objects.create(
            cycle=cycle,
            variant=variant,
            current_replicas=2,
            ready_replicas=2,
            target_replicas=3,
        )
        MetricSample.objects.create(
            cycle=cycle, variant=variant, pod=f"{variant.name}-0", sampled_at=now
        )
        actions.propose_action(variant.pk, 2, 3)


@pytest.mark.parametrize(
    "path",
    ["variants", "models", "decisions", "metric-samples", "audit-log", "scale-actions"],
)
def test_lists_hide_other_team(world: World, path: str) -> None:
    # given one row of each kind for team-a and for team-b
    record_cycle(world)
    # when the team-b viewer lists them
    body = client_for(world.viewer_b).get(f"/api/v1/{path}/").json()
    # then only team-b's row comes back, and the count agrees
    assert body["count"] == 1
    assert len(body["results"]) == 1
    assert "team-a" not in str(body["results"])
    assert "llama-h100-a" not in str(body["results"])


def test_cycle_shows_own_team_decisions(world: World) -> None:
    record_cycle(world)
    body = client_for(world.viewer_b).get("/api/v1/cycles/").json()
    decisions = body["results"][0]["decisions"]
    assert [row["variant_name"] for row in decisions] == ["llama-l4-b"]
    assert "inputs" not in body["results"][0]


def test_audit_log_shows_own_team(world: World) -> None:
    theirs = actions.propose_action(world.variant_a.pk, 2, 3)
    mine = actions.propose_action(world.variant_b.pk, 3, 4)
    body = client_for(world.viewer_b).get("/api/v1/audit-log/").json()
    assert body["count"] == 1
    assert body["results"][0]["object_id"] == str(mine.pk)
    assert AuditLog.objects.filter(object_id=str(theirs.pk)).count() == 1


def test_teams_list_membership_only(world: World) -> None:
    body = client_for(world.viewer_b).get("/api/v1/teams/").json()
    assert [team["name"] for team in body["results"]] == ["team-b"]


# Authentication.


@pytest.mark.parametrize("path", ["variants/", "scale-actions/", "accelerators/"])
def test_anonymous_rejected(world: World, path: str) -> None:
    response = APIClient().get(f"/api/v1/{path}")
    assert response.status_code in (401, 403)


def test_token_authentication_works(world: World) -> None:
    token = Token.objects.create(user=world.viewer_b)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/v1/variants/")
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_token_authentication_unknown_token_401(world: World) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")
    assert client.get("/api/v1/variants/").status_code == 401


def test_session_authentication_works(world: World) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.viewer_b)
    response = client.get("/api/v1/variants/")
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_session_post_without_csrf_403(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.u2)
    response = client.post(f"/api/v1/scale-actions/{proposal.pk}/approve/")
    assert response.status_code == 403
    proposal.refresh_from_db()
    assert proposal.state == ActionState.PENDING


# Global catalogue.


def test_viewer_creates_accelerator_403(world: World) -> None:
    response = client_for(world.viewer_b).post(
        "/api/v1/accelerators/", ACCELERATOR, format="json"
    )
    assert response.status_code == 403


def test_operator_creates_accelerator_201(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/accelerators/", ACCELERATOR, format="json"
    )
    assert response.status_code == 201


def test_delete_used_accelerator_409(world: World) -> None:
    accelerator_id = world.variant_a.accelerator_id
    response = client_for(world.superuser).delete(
        f"/api/v1/accelerators/{accelerator_id}/"
    )
    assert response.status_code == 409


ACCELERATOR = {
    "name": "L40S",
    "memory_gb": 48,
    "usd_per_gpu_hour": 1.86,
    "power_idle_w": 60,
    "power_mid_w": 200,
    "power_full_w": 350,
}


def test_failed_action_shows_base_changed(world: World, queued: list[int]) -> None:
    # given P (A 4->5) approved, then A scaled to 6 by hand
    proposal = actions.propose_action(world.variant_a.pk, 4, 5)
    actions.approve_action(proposal.pk, world.u2)
    actions.apply_action(
        proposal.pk, actuator=FakeActuator(replicas={"llama-h100-a": 6})
    )
    # when the approver reads the action
    body = client_for(world.u2).get(f"/api/v1/scale-actions/{proposal.pk}/").json()
    # then it is failed with the reason and the message
    assert body["state"] == "failed"
    assert body["failure_reason"] == "base_changed"
    assert body["message"] == "expected 4 replicas, found 6"
