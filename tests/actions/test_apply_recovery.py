"""Applies that died half-way, and approvals that were never applied."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from tests.actions.builders import FakeActuator
from tests.actions.conftest import World
from wva_web.control import actions
from wva_web.control.models import ActionState, AuditLog, ScaleAction


def approved(world: World, from_replicas: int, to_replicas: int) -> int:
    action = actions.propose_action(world.variant_a.pk, from_replicas, to_replicas)
    actions.approve_action(action.pk, world.u2)
    return action.pk


def decided_ago(action_id: int, seconds: float, now: dt.datetime) -> None:
    ScaleAction.objects.filter(pk=action_id).update(
        decided_at=now - dt.timedelta(seconds=seconds)
    )


def test_apply_finds_target_marks_applied(world: World, queued: list[int]) -> None:
    # Given 4 -> 5 approved, and an earlier apply that set 5 and then died.
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 5})
    # When the apply runs again.
    result = actions.apply_action(action_id, actuator=actuator)
    # Then the action is applied, not base_changed, and nothing is set again.
    assert result.state == ActionState.APPLIED
    assert result.failure_reason == ""
    assert result.applied_at is not None
    assert actuator.calls == []
    audit = AuditLog.objects.get(object_id=str(action_id), verb="apply")
    assert audit.message == "llama-h100-a already runs 5 replicas, the action's target"


def test_apply_override_finds_target_applied(world: World, queued: list[int]) -> None:
    # Given 4 -> 5 overridden to 7, and the workload already at 7.
    action = actions.propose_action(world.variant_a.pk, 4, 5)
    actions.override_action(action.pk, world.u2, 7)
    actuator = FakeActuator(replicas={"llama-h100-a": 7})
    # When the apply runs.
    result = actions.apply_action(action.pk, actuator=actuator)
    # Then it is applied without a write.
    assert result.state == ActionState.APPLIED
    assert actuator.calls == []


def test_apply_other_count_still_base_changed(world: World, queued: list[int]) -> None:
    # Given 4 -> 5 approved and the workload at 6, neither from nor target.
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 6})
    result = actions.apply_action(action_id, actuator=actuator)
    assert result.state == ActionState.FAILED
    assert result.failure_reason == "base_changed"


def test_overdue_approval_fails_apply_timeout(world: World, queued: list[int]) -> None:
    # Given one approval 601 s old and one 599 s old, with a 600 s deadline.
    now = timezone.now()
    old = approved(world, 4, 5)
    decided_ago(old, 601, now)
    recent = actions.propose_action(world.variant_b.pk, 3, 4)
    actions.approve_action(recent.pk, world.u3)
    decided_ago(recent.pk, 599, now)
    # When the deadline check runs.
    failed = actions.fail_overdue_applies(now, 600.0)
    # Then only the older one failed, with the reason and an audit row.
    action = ScaleAction.objects.get(pk=old)
    assert failed == [old]
    assert action.state == ActionState.FAILED
    assert action.failure_reason == "apply_timeout"
    assert action.message == (
        "approved 601 s ago and not applied within the 600 s deadline; "
        "the next cycle plans from the live count"
    )
    assert AuditLog.objects.filter(object_id=str(old), verb="fail").count() == 1
    assert ScaleAction.objects.get(pk=recent.pk).state == ActionState.APPROVED


def test_overdue_override_fails_apply_timeout(world: World, queued: list[int]) -> None:
    now = timezone.now()
    action = actions.propose_action(world.variant_a.pk, 4, 5)
    actions.override_action(action.pk, world.u2, 6)
    decided_ago(action.pk, 3600, now)
    assert actions.fail_overdue_applies(now, 600.0) == [action.pk]
    assert ScaleAction.objects.get(pk=action.pk).failure_reason == "apply_timeout"


def test_deadline_defaults_to_600_s(settings) -> None:
    del settings.WVA_APPLY_DEADLINE_S
    assert actions.apply_deadline_s() == 600.0


def test_deadline_read_from_settings(settings) -> None:
    settings.WVA_APPLY_DEADLINE_S = 120
    assert actions.apply_deadline_s() == 120.0
