"""Approve, reject and override forms call the action functions and report refusals."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from tests.dashboard.conftest import World, make_action
from wva_web.control.models import ActionState, ScaleAction, VariantState


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def follow_post(client: Client, url: str, data: dict[str, str] | None = None) -> Any:
    return client.post(url, data or {}, follow=True)


def test_approve_changes_state(world: World) -> None:
    # given a proposal of the control cycle
    action = make_action(world.alpha, 4, 5)
    # when an approver of team a approves it
    response = follow_post(world.client("approver_a"), f"/actions/{action.pk}/approve/")
    # then
    action.refresh_from_db()
    assert action.state == ActionState.APPROVED
    assert action.decided_by == world.users["approver_a"]
    assert (
        f'data-action-id="{action.pk}" data-state="approved"'
        in response.content.decode()
    )


def test_approve_twice_shows_conflict(world: World) -> None:
    # given an action already approved
    action = make_action(world.alpha, 4, 5)
    follow_post(world.client("approver_a"), f"/actions/{action.pk}/approve/")
    # when a second approver approves it too
    response = follow_post(
        world.client("approver_a2"), f"/actions/{action.pk}/approve/"
    )
    # then
    assert response.status_code == 200
    assert any("already approved" in text for text in texts(response))


def test_own_request_hides_approve_button(world: World) -> None:
    # given an approver's own request
    action = make_action(world.alpha, 4, 6, requested_by=world.users["approver_a"])
    # when
    body = world.client("approver_a").get("/actions/").content.decode()
    # then: reject stays, approve and override are hidden
    assert f'id="approve-{action.pk}"' not in body
    assert f'id="override-{action.pk}"' not in body
    assert f'id="reject-{action.pk}"' in body


def test_other_approver_sees_approve_button(world: World) -> None:
    action = make_action(world.alpha, 4, 6, requested_by=world.users["approver_a"])
    body = world.client("approver_a2").get("/actions/").content.decode()
    assert f'id="approve-{action.pk}"' in body


def test_own_request_approve_rejected(world: World) -> None:
    # given an approver's own request
    action = make_action(world.alpha, 4, 6, requested_by=world.users["approver_a"])
    # when the approver posts the approval anyway
    response = follow_post(world.client("approver_a"), f"/actions/{action.pk}/approve/")
    # then the action stays pending and the page shows why
    action.refresh_from_db()
    assert action.state == ActionState.PENDING
    assert any("another approver must approve" in text for text in texts(response))


def test_superuser_own_request_hides_approve(world: World) -> None:
    action = make_action(world.alpha, 4, 6, requested_by=world.users["root"])
    body = world.client("root").get("/actions/").content.decode()
    assert f'id="approve-{action.pk}"' not in body


@pytest.mark.parametrize("name", ["viewer_a", "operator_a"])
def test_non_approver_sees_no_decision_buttons(world: World, name: str) -> None:
    action = make_action(world.alpha, 4, 5)
    body = world.client(name).get("/actions/").content.decode()
    assert f'id="approve-{action.pk}"' not in body
    assert f'id="reject-{action.pk}"' not in body
    assert f'id="override-{action.pk}"' not in body


def test_operator_may_reject_own_request(world: World) -> None:
    # given an operator's own request
    action = make_action(world.alpha, 4, 6, requested_by=world.users["operator_a"])
    client = world.client("operator_a")
    # when
    body = client.get("/actions/").content.decode()
    follow_post(client, f"/actions/{action.pk}/reject/", {"message": "typo"})
    # then
    action.refresh_from_db()
    assert f'id="reject-{action.pk}"' in body
    assert action.state == ActionState.REJECTED
    assert action.message == "typo"


def test_viewer_approve_rejected(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    response = follow_post(world.client("viewer_a"), f"/actions/{action.pk}/approve/")
    action.refresh_from_db()
    assert action.state == ActionState.PENDING
    assert any("Not approved" in text for text in texts(response))


def test_other_team_approver_gets_404(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    response = world.client("approver_b").post(f"/actions/{action.pk}/approve/")
    action.refresh_from_db()
    assert response.status_code == 404
    assert action.state == ActionState.PENDING


def test_override_sets_replicas_and_pin(world: World) -> None:
    # given
    action = make_action(world.alpha, 4, 5)
    # when an approver overrides to 6 replicas for 30 minutes
    follow_post(
        world.client("approver_a"),
        f"/actions/{action.pk}/override/",
        {"replicas": "6", "duration_min": "30"},
    )
    # then
    action.refresh_from_db()
    world.alpha.refresh_from_db()
    assert action.state == ActionState.OVERRIDDEN
    assert action.override_replicas == 6
    assert world.alpha.pinned_replicas == 6
    pinned_s = (world.alpha.pinned_until - action.decided_at).total_seconds()
    assert pinned_s == pytest.approx(1800, abs=2)


def test_override_without_duration_pins_nothing(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    follow_post(
        world.client("approver_a"), f"/actions/{action.pk}/override/", {"replicas": "3"}
    )
    action.refresh_from_db()
    world.alpha.refresh_from_db()
    assert action.override_replicas == 3
    assert world.alpha.pinned_until is None


def test_override_above_max_shows_error(world: World) -> None:
    # given max_replicas 8
    action = make_action(world.alpha, 4, 5)
    # when
    response = follow_post(
        world.client("approver_a"), f"/actions/{action.pk}/override/", {"replicas": "9"}
    )
    # then
    action.refresh_from_db()
    assert action.state == ActionState.PENDING
    assert any("max_replicas (8)" in text for text in texts(response))


def test_override_invalid_form_shows_error(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    response = follow_post(
        world.client("approver_a"), f"/actions/{action.pk}/override/", {"replicas": "x"}
    )
    action.refresh_from_db()
    assert action.state == ActionState.PENDING
    assert any(text.startswith("Invalid override") for text in texts(response))


def test_decision_requires_post(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    response = world.client("approver_a").get(f"/actions/{action.pk}/approve/")
    assert response.status_code == 405


def test_forms_are_csrf_protected(world: World) -> None:
    # given a client that enforces CSRF checks, without a token
    action = make_action(world.alpha, 4, 5)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["approver_a"])
    # when
    response = client.post(f"/actions/{action.pk}/approve/")
    # then
    action.refresh_from_db()
    assert response.status_code == 403
    assert action.state == ActionState.PENDING


def test_pending_card_shows_cost_change(world: World) -> None:
    # given 4 -> 6 on H100-80GB at 12.29 USD per GPU-hour
    make_action(world.alpha, 4, 6)
    body = world.client("viewer_a").get("/actions/").content.decode()
    assert "+$24.58/h" in body


def test_history_shows_failure_message(world: World) -> None:
    make_action(
        world.alpha,
        4,
        5,
        state=ActionState.FAILED,
        failure_reason="base_changed",
        message="expected 4 replicas, found 6",
        decided_by=world.users["approver_a"],
    )
    body = world.client("viewer_a").get("/actions/").content.decode()
    assert "expected 4 replicas, found 6" in body
    assert 'data-state="failed"' in body
    assert "approver_a" in body


def test_manual_scale_request_creates_action(world: World) -> None:
    # given an operator of team a and 4 replicas now
    client = world.client("operator_a")
    # when
    response = follow_post(
        client, f"/variants/{world.alpha.pk}/scale/", {"to_replicas": "6"}
    )
    # then
    action = ScaleAction.objects.get(variant=world.alpha)
    assert (action.from_replicas, action.to_replicas) == (4, 6)
    assert action.requested_by == world.users["operator_a"]
    assert any("it waits for an approver" in text for text in texts(response))


def test_manual_scale_form_hidden_for_viewer(world: World) -> None:
    viewer = (
        world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    )
    operator = (
        world.client("operator_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    )
    assert 'id="manual-scale"' not in viewer
    assert 'id="manual-scale"' in operator


def test_manual_scale_by_viewer_rejected(world: World) -> None:
    response = follow_post(
        world.client("viewer_a"),
        f"/variants/{world.alpha.pk}/scale/",
        {"to_replicas": "6"},
    )
    assert not ScaleAction.objects.exists()
    assert any("Request not recorded" in text for text in texts(response))


def test_manual_scale_unknown_current_rejected(world: World) -> None:
    VariantState.objects.filter(variant=world.alpha).update(current_replicas=None)
    response = follow_post(
        world.client("operator_a"),
        f"/variants/{world.alpha.pk}/scale/",
        {"to_replicas": "6"},
    )
    assert not ScaleAction.objects.exists()
    assert any("unknown" in text for text in texts(response))
