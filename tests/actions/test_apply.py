"""Applying scale actions: base check, absolute counts, idempotence, failures."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.actions.builders import FakeActuator
from tests.actions.conftest import World
from wva_web.catalog.models import Variant
from wva_web.control import actions
from wva_web.control.models import ActionState, AuditLog, ScaleAction


class PermanentError(Exception):
    """Stands in for the actuator module's permanent error."""


class TransientError(Exception):
    """Stands in for the actuator module's transient error."""


@pytest.fixture
def permanent(monkeypatch: pytest.MonkeyPatch) -> type[Exception]:
    monkeypatch.setattr(actions, "_permanent_errors", lambda: (PermanentError,))
    return PermanentError


def approved(
    world: World, from_replicas: int, to_replicas: int, victim: str = ""
) -> int:
    action = actions.propose_action(
        world.variant_a.pk, from_replicas, to_replicas, victim_pod=victim
    )
    actions.approve_action(action.pk, world.u2)
    return action.pk


def test_apply_base_changed_fails_without_setting(
    world: World, queued: list[int]
) -> None:
    # given P (A 4->5) approved, and A scaled to 6 by hand before the apply
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 6})
    # when the apply step runs
    result = actions.apply_action(action_id, actuator=actuator)
    # then nothing is set and the action names the mismatch
    assert result.state == ActionState.FAILED
    assert result.failure_reason == "base_changed"
    assert result.message == "expected 4 replicas, found 6"
    assert actuator.calls == []
    assert actuator.replicas["llama-h100-a"] == 6


def test_apply_sets_absolute_count(world: World, queued: list[int]) -> None:
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    result = actions.apply_action(action_id, actuator=actuator)
    assert result.state == ActionState.APPLIED
    assert result.applied_at is not None
    assert actuator.calls == [("llama-h100-a", 5, "", False)]


def test_apply_twice_sets_once(world: World, queued: list[int]) -> None:
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    actions.apply_action(action_id, actuator=actuator)
    second = actions.apply_action(action_id, actuator=actuator)
    assert second.state == ActionState.APPLIED
    assert len(actuator.calls) == 1
    verbs = AuditLog.objects.filter(object_id=str(action_id), verb="apply").count()
    assert verbs == 1


def test_apply_reduction_names_victim(world: World, queued: list[int]) -> None:
    action_id = approved(world, 4, 3, victim="llama-h100-a-7f9c")
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    actions.apply_action(action_id, actuator=actuator)
    assert actuator.calls == [("llama-h100-a", 3, "llama-h100-a-7f9c", False)]


def test_apply_override_uses_override_count(world: World, queued: list[int]) -> None:
    action = actions.propose_action(world.variant_a.pk, 4, 5)
    actions.override_action(action.pk, world.u2, 7)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    result = actions.apply_action(action.pk, actuator=actuator)
    assert result.state == ActionState.APPLIED
    assert actuator.calls == [("llama-h100-a", 7, "", False)]


def test_apply_note_names_action_and_approver(world: World, queued: list[int]) -> None:
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    actions.apply_action(action_id, actuator=actuator)
    [note] = actuator.notes
    assert note.action_id == action_id
    assert note.approved_by == world.u2.get_username()
    assert note.override is False


def test_apply_note_marks_override(world: World, queued: list[int]) -> None:
    action = actions.propose_action(world.variant_a.pk, 4, 5)
    actions.override_action(action.pk, world.u2, 7)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    actions.apply_action(action.pk, actuator=actuator)
    [note] = actuator.notes
    assert note.action_id == action.pk
    assert note.override is True


def test_apply_pending_approval_mode_does_nothing(world: World) -> None:
    action = actions.propose_action(world.variant_a.pk, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    result = actions.apply_action(action.pk, actuator=actuator)
    assert result.state == ActionState.PENDING
    assert actuator.calls == []


def test_apply_pending_auto_mode_approves_as_system(world: World) -> None:
    Variant.objects.filter(pk=world.variant_a.pk).update(mode=Variant.Mode.AUTO)
    action = actions.propose_action(world.variant_a.pk, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    result = actions.apply_action(action.pk, actuator=actuator)
    verbs = list(
        AuditLog.objects.filter(object_id=str(action.pk))
        .order_by("pk")
        .values_list("verb", "actor")
    )
    assert result.state == ActionState.APPLIED
    assert verbs == [("propose", None), ("approve", None), ("apply", None)]


def test_apply_superseded_does_nothing(world: World) -> None:
    older = actions.propose_action(world.variant_a.pk, 4, 5)
    actions.propose_action(world.variant_a.pk, 4, 6)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    result = actions.apply_action(older.pk, actuator=actuator)
    assert result.state == ActionState.SUPERSEDED
    assert actuator.calls == []


@override_settings(WVA_DRY_RUN=True)
def test_apply_dry_run_recorded(world: World, queued: list[int]) -> None:
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    result = actions.apply_action(action_id, actuator=actuator)
    assert result.dry_run is True
    assert actuator.calls == [("llama-h100-a", 5, "", True)]


def test_apply_permanent_error_fails_action(
    world: World, queued: list[int], permanent: type[Exception]
) -> None:
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(
        replicas={"llama-h100-a": 4}, set_error=permanent("deployments/scale forbidden")
    )
    result = actions.apply_action(action_id, actuator=actuator)
    assert result.state == ActionState.FAILED
    assert result.failure_reason == "actuator_error"
    assert "deployments/scale forbidden" in result.message


def test_apply_transient_error_keeps_approved(
    world: World, queued: list[int], permanent: type[Exception]
) -> None:
    action_id = approved(world, 4, 5)
    actuator = FakeActuator(
        replicas={"llama-h100-a": 4}, read_error=TransientError("503")
    )
    with pytest.raises(TransientError):
        actions.apply_action(action_id, actuator=actuator)
    state = ScaleAction.objects.get(pk=action_id).state
    assert state == ActionState.APPROVED


def test_apply_after_newer_applied_finds_changed_base(
    world: World, queued: list[int]
) -> None:
    # given P (3->4) approved and P' (3->5) from another requester
    first = approved(world, 3, 4)
    second = actions.request_manual_action(world.u1, world.variant_a, 5)
    ScaleAction.objects.filter(pk=second.pk).update(from_replicas=3)
    actions.approve_action(second.pk, world.u2)
    actuator = FakeActuator(replicas={"llama-h100-a": 3})
    # when both are applied, P first
    actions.apply_action(first, actuator=actuator)
    late = actions.apply_action(second.pk, actuator=actuator)
    # then P' fails on the changed base and A stays at 4
    assert late.failure_reason == "base_changed"
    assert late.message == "expected 3 replicas, found 4"
    assert actuator.replicas["llama-h100-a"] == 4


def test_apply_in_advisory_mode_sets_nothing(world: World, queued: list[int]) -> None:
    # given an approved action, and the variant moved to advisory before the apply
    action_id = approved(world, 4, 5)
    Variant.objects.filter(pk=world.variant_a.pk).update(mode=Variant.Mode.ADVISORY)
    actuator = FakeActuator(replicas={"llama-h100-a": 4})
    # when the apply step runs
    result = actions.apply_action(action_id, actuator=actuator)
    # then nothing is set and the reason names the mode
    assert result.state == ActionState.FAILED
    assert result.failure_reason == "mode_advisory"
    assert actuator.calls == []
