"""State changes of scale actions: approve, reject, override, supersede, expire."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.test import override_settings
from django.utils import timezone

from tests.actions.builders import FakeActuator
from tests.actions.conftest import World
from wva_web.catalog.models import Variant
from wva_web.control import actions
from wva_web.control.models import ActionState, AuditLog, ScaleAction


def audit_verbs(action: ScaleAction) -> list[str]:
    rows = AuditLog.objects.filter(object_type="scale_action", object_id=str(action.pk))
    return list(rows.order_by("at", "pk").values_list("verb", flat=True))


def test_manual_request_reads_current_count(world: World) -> None:
    # given variant A at 2 replicas
    # when u1 requests 8
    action = actions.request_manual_action(world.u1, world.variant_a, 8)
    # then the action goes 2 -> 8, pending, requested by u1
    assert action.from_replicas == 2
    assert action.to_replicas == 8
    assert action.state == ActionState.PENDING
    assert action.requested_by == world.u1
    assert audit_verbs(action) == ["propose"]


def test_manual_request_by_viewer_forbidden(world: World) -> None:
    with pytest.raises(actions.ActionForbidden):
        actions.request_manual_action(world.viewer_a, world.variant_a, 3)
    assert ScaleAction.objects.count() == 0


def test_manual_request_other_team_not_found(world: World) -> None:
    with pytest.raises(actions.ActionNotFound):
        actions.request_manual_action(world.u3, world.variant_a, 3)


def test_manual_request_in_advisory_mode_invalid(world: World) -> None:
    Variant.objects.filter(pk=world.variant_a.pk).update(mode=Variant.Mode.ADVISORY)
    variant = Variant.objects.get(pk=world.variant_a.pk)
    with pytest.raises(actions.ActionInvalid) as caught:
        actions.request_manual_action(world.u1, variant, 3)
    assert caught.value.field == "variant"
    assert "mode advisory" in caught.value.message


def test_manual_request_unknown_count_invalid(world: World) -> None:
    world.variant_a.state.delete()
    variant = Variant.objects.get(pk=world.variant_a.pk)
    with pytest.raises(actions.ActionInvalid) as caught:
        actions.request_manual_action(world.u1, variant, 3)
    assert "unknown until a control cycle has read it" in caught.value.message


def test_manual_request_outside_bounds_invalid(world: World) -> None:
    with pytest.raises(actions.ActionInvalid) as caught:
        actions.request_manual_action(world.u1, world.variant_a, 11)
    assert caught.value.field == "to_replicas"
    assert "max_replicas (10)" in caught.value.message


def test_approve_sets_decider_and_queues_after_commit(
    world: World, queued: list[int], django_capture_on_commit_callbacks
) -> None:
    action = actions.request_manual_action(world.u1, world.variant_a, 8)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        actions.approve_action(action.pk, world.u2)
    action.refresh_from_db()
    assert action.state == ActionState.APPROVED
    assert action.decided_by == world.u2
    assert len(callbacks) == 1
    assert queued == [action.pk]
    assert audit_verbs(action) == ["propose", "approve"]


def test_approve_twice_conflicts(world: World, queued: list[int]) -> None:
    action = actions.request_manual_action(world.u1, world.variant_a, 8)
    actions.approve_action(action.pk, world.u2)
    with pytest.raises(actions.ActionConflict, match="already approved"):
        actions.approve_action(action.pk, world.superuser)
    assert audit_verbs(action) == ["propose", "approve"]


def test_self_approval_forbidden_and_changes_nothing(
    world: World, queued: list[int], django_capture_on_commit_callbacks
) -> None:
    approver_request = actions.request_manual_action(world.u2, world.variant_a, 5)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(actions.ActionForbidden),
    ):
        actions.approve_action(approver_request.pk, world.u2)
    approver_request.refresh_from_db()
    assert approver_request.state == ActionState.PENDING
    assert callbacks == []
    assert audit_verbs(approver_request) == ["propose"]


@override_settings(WVA_FOUR_EYES=True)
def test_superuser_self_approval_forbidden_with_four_eyes(world: World) -> None:
    action = actions.request_manual_action(world.superuser, world.variant_a, 5)
    with pytest.raises(actions.ActionForbidden):
        actions.approve_action(action.pk, world.superuser)


@override_settings(WVA_FOUR_EYES=False)
def test_superuser_self_approval_allowed_without_four_eyes(
    world: World, queued: list[int]
) -> None:
    action = actions.request_manual_action(world.superuser, world.variant_a, 5)
    approved = actions.approve_action(action.pk, world.superuser)
    assert approved.state == ActionState.APPROVED


@override_settings(WVA_FOUR_EYES=False)
def test_approver_self_approval_forbidden_without_four_eyes(world: World) -> None:
    action = actions.request_manual_action(world.u2, world.variant_a, 5)
    with pytest.raises(actions.ActionForbidden):
        actions.approve_action(action.pk, world.u2)


def test_reject_own_request_allowed(world: World) -> None:
    action = actions.request_manual_action(world.u1, world.variant_a, 8)
    rejected = actions.reject_action(action.pk, world.u1, "typo")
    assert rejected.state == ActionState.REJECTED
    assert rejected.message == "typo"


def test_reject_by_other_operator_forbidden(world: World) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    with pytest.raises(actions.ActionForbidden):
        actions.reject_action(action.pk, world.u1)


def test_reject_after_approve_conflicts(world: World, queued: list[int]) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    actions.approve_action(action.pk, world.u2)
    with pytest.raises(actions.ActionConflict, match="already approved"):
        actions.reject_action(action.pk, world.u2)


def test_system_approval_needs_auto_mode(world: World) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    with pytest.raises(actions.ActionForbidden):
        actions.approve_action(action.pk, None)


def test_propose_supersedes_older_pending(world: World) -> None:
    older = actions.propose_action(world.variant_a.pk, 2, 3, reasons=["scale_up"])
    newer = actions.propose_action(world.variant_a.pk, 2, 4, reasons=["scale_up"])
    older.refresh_from_db()
    assert older.state == ActionState.SUPERSEDED
    assert older.failure_reason == "superseded"
    assert f"scale action {newer.pk}" in older.message
    assert audit_verbs(older) == ["propose", "supersede"]
    assert newer.state == ActionState.PENDING


def test_propose_identical_returns_existing(world: World) -> None:
    first = actions.propose_action(world.variant_a.pk, 2, 3)
    second = actions.propose_action(world.variant_a.pk, 2, 3)
    assert second.pk == first.pk
    assert ScaleAction.objects.count() == 1


def test_propose_keeps_other_requesters_pending(world: World) -> None:
    manual = actions.request_manual_action(world.u1, world.variant_a, 8)
    actions.propose_action(world.variant_a.pk, 2, 3)
    manual.refresh_from_db()
    assert manual.state == ActionState.PENDING


def test_propose_leaves_approved_action_alone(world: World, queued: list[int]) -> None:
    approved = actions.propose_action(world.variant_a.pk, 2, 3)
    actions.approve_action(approved.pk, world.u2)
    actions.propose_action(world.variant_a.pk, 2, 5)
    approved.refresh_from_db()
    assert approved.state == ActionState.APPROVED


def test_override_pins_variant(
    world: World, queued: list[int], django_capture_on_commit_callbacks
) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        overridden = actions.override_action(action.pk, world.u2, 6, duration_s=600)
    variant = Variant.objects.get(pk=world.variant_a.pk)
    assert overridden.state == ActionState.OVERRIDDEN
    assert overridden.override_replicas == 6
    assert variant.pinned_replicas == 6
    assert variant.pinned_until is not None
    assert variant.pinned_until >= before + dt.timedelta(seconds=600)
    assert queued == [action.pk]


def test_override_without_duration_pins_nothing(
    world: World, queued: list[int]
) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    actions.override_action(action.pk, world.u2, 4)
    variant = Variant.objects.get(pk=world.variant_a.pk)
    assert variant.pinned_replicas is None


def test_override_outside_bounds_invalid(world: World) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    with pytest.raises(actions.ActionInvalid) as caught:
        actions.override_action(action.pk, world.u2, 0)
    assert caught.value.field == "replicas"
    action.refresh_from_db()
    assert action.state == ActionState.PENDING


def test_override_by_operator_forbidden(world: World) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    with pytest.raises(actions.ActionForbidden):
        actions.override_action(action.pk, world.u1, 4)


@override_settings(WVA_ACTION_TTL_S=600)
def test_expire_only_old_pending(world: World, queued: list[int]) -> None:
    now = timezone.now()
    old = actions.propose_action(world.variant_a.pk, 2, 3)
    ScaleAction.objects.filter(pk=old.pk).update(
        created_at=now - dt.timedelta(seconds=601)
    )
    fresh = actions.propose_action(world.variant_b.pk, 3, 4)
    expired = actions.expire_actions(now)
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert expired == 1
    assert old.state == ActionState.EXPIRED
    assert fresh.state == ActionState.PENDING


def test_approve_logs_one_line(world: World, queued: list[int], caplog) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3, reasons=["scale_up:kv"])
    with caplog.at_level(logging.INFO, logger="wva_web.control.actions"):
        actions.approve_action(action.pk, world.u2)
    lines = [r.getMessage() for r in caplog.records if " approve:" in r.getMessage()]
    assert len(lines) == 1
    assert "variant=llama-h100-a from=2 to=3 accelerator=H100-80GB" in lines[0]
    assert "by=u2 approved_by=u2 dry_run=False" in lines[0]


def test_apply_logs_approver(world: World, queued: list[int], caplog) -> None:
    action = actions.propose_action(world.variant_a.pk, 2, 3)
    actions.approve_action(action.pk, world.u2)
    actuator = FakeActuator(replicas={"llama-h100-a": 2})
    with caplog.at_level(logging.INFO, logger="wva_web.control.actions"):
        actions.apply_action(action.pk, actuator=actuator)
    lines = [r.getMessage() for r in caplog.records if " apply:" in r.getMessage()]
    assert len(lines) == 1
    assert "state=applied" in lines[0]
    assert "by=system approved_by=u2 dry_run=False" in lines[0]
