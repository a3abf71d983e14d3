"""The apply task: retries of database and Kubernetes errors, and giving up."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
from django.db import OperationalError

from tests.actions.builders import FakeActuator, make_team, make_user, make_variant
from wva_web.catalog.models import Variant
from wva_web.control import actions, tasks
from wva_web.control.models import ActionState, AuditLog, ScaleAction
from wva_web.integrations.kube import TransientActuatorError

ERROR_500 = "patch scale of llm/llama-a failed: HTTP 500 Internal Server Error"


@pytest.fixture
def variant(db: None, settings: Any) -> Variant:
    settings.WVA_LEADER_ELECTION = False
    return make_variant(make_team("team-a"), "llama-a", replicas=2)


@pytest.fixture
def actuator(monkeypatch: pytest.MonkeyPatch) -> FakeActuator:
    fake = FakeActuator(replicas={"llama-a": 2})
    monkeypatch.setattr(actions, "_default_actuator", lambda: fake)
    return fake


def approved_action(variant: Variant, monkeypatch: pytest.MonkeyPatch) -> int:
    """Propose 2 -> 3 and approve it, without queueing the apply task."""
    monkeypatch.setattr(actions, "_send_apply", lambda action_id: None)
    approver = make_user("approver", variant.model.team, "approver")
    action = actions.propose_action(variant.pk, 2, 3)
    actions.approve_action(action.pk, approver)
    return action.pk


class Flaky:
    """Wraps `apply_action`: raises `error` on the first `failures` calls."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0
        self.real = actions.apply_action

    def __call__(self, action_id: int) -> ScaleAction:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.real(action_id)


def test_database_locked_retried_then_applied(
    variant: Variant, actuator: FakeActuator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an approved action, and SQLite locked on the first two tries.
    action_id = approved_action(variant, monkeypatch)
    flaky = Flaky(OperationalError("database is locked"), failures=2)
    monkeypatch.setattr(actions, "apply_action", flaky)
    # When the apply task runs (eagerly, retries included).
    result = tasks.apply_scale_action.apply((action_id,))
    # Then it ran three times and the action is applied at 3 replicas.
    assert flaky.calls == 3
    assert result.get() == ActionState.APPLIED
    assert ScaleAction.objects.get(pk=action_id).state == ActionState.APPLIED
    assert actuator.replicas["llama-a"] == 3


def test_kube_500_gives_up_as_actuator_unavailable(
    variant: Variant,
    actuator: FakeActuator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an approved action and every scale patch failing with HTTP 500.
    action_id = approved_action(variant, monkeypatch)
    actuator.set_error = TransientActuatorError(ERROR_500, "http_500", 500)
    # When the apply task runs through all its retries.
    with caplog.at_level(logging.WARNING, logger="wva_web.control.tasks"):
        result = tasks.apply_scale_action.apply((action_id,))
    # Then the action failed with the reason and the last error's message.
    action = ScaleAction.objects.get(pk=action_id)
    assert result.get() == ActionState.FAILED
    assert action.state == ActionState.FAILED
    assert action.failure_reason == "actuator_unavailable"
    assert action.message == ERROR_500
    # And one audit row records the change from approved.
    audit = AuditLog.objects.get(object_id=str(action_id), verb="fail")
    assert audit.before["state"] == ActionState.APPROVED
    assert audit.after["failure_reason"] == "actuator_unavailable"
    # And the log shows five retries and the final error with its message.
    own = [r for r in caplog.records if r.name == "wva_web.control.tasks"]
    retries = [r for r in own if r.levelno == logging.WARNING]
    final = [r for r in own if r.levelno == logging.ERROR]
    assert len(retries) == tasks.APPLY_MAX_RETRIES
    assert len(final) == 1
    assert ERROR_500 in final[0].getMessage()
    assert "Unpickleable" not in caplog.text


def test_database_locked_throughout_fails_action(
    variant: Variant, actuator: FakeActuator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the database locked on every apply try, but free to record a failure.
    action_id = approved_action(variant, monkeypatch)
    flaky = Flaky(OperationalError("database is locked"), failures=100)
    monkeypatch.setattr(actions, "apply_action", flaky)
    # When the apply task runs through all its retries.
    tasks.apply_scale_action.apply((action_id,))
    # Then it tried 1 + 5 times and the action failed naming the database.
    action = ScaleAction.objects.get(pk=action_id)
    assert flaky.calls == 1 + tasks.APPLY_MAX_RETRIES
    assert action.state == ActionState.FAILED
    assert action.failure_reason == "database_unavailable"
    assert action.message == "database is locked"


def test_retry_backoff_doubles_up_to_cap(
    variant: Variant, actuator: FakeActuator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an approved action and every try failing with a 503.
    action_id = approved_action(variant, monkeypatch)
    actuator.read_error = TransientActuatorError("read failed: HTTP 503", "http_503")
    countdowns: list[float] = []
    real_retry = tasks.apply_scale_action.retry

    def record(*args: Any, **kwargs: Any) -> Any:
        countdowns.append(kwargs["countdown"])
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(tasks.apply_scale_action, "retry", record)
    # When the apply task runs.
    tasks.apply_scale_action.apply((action_id,))
    # Then the retries waited 1, 2, 4, 8 and 16 s.
    assert countdowns == [1, 2, 4, 8, 16]


def test_actuator_error_survives_pickle() -> None:
    # Given a transient error as Celery would pickle it for a retry.
    error = TransientActuatorError(ERROR_500, "http_500", 500)
    # When it is pickled and loaded.
    loaded = pickle.loads(pickle.dumps(error))
    # Then its type, message, reason and status survive.
    assert type(loaded) is TransientActuatorError
    assert str(loaded) == ERROR_500
    assert loaded.reason == "http_500"
    assert loaded.status == 500


def test_retry_error_survives_pickle() -> None:
    error = tasks.ApplyRetryError("database is locked")
    loaded = pickle.loads(pickle.dumps(error))
    assert str(loaded) == "database is locked"


def test_give_up_keeps_applied_action(
    variant: Variant, actuator: FakeActuator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an action that another apply recorded as applied meanwhile.
    action_id = approved_action(variant, monkeypatch)
    ScaleAction.objects.filter(pk=action_id).update(state=ActionState.APPLIED)
    # When the give-up path runs for it.
    action = actions.fail_unapplied(action_id, "actuator_unavailable", ERROR_500)
    # Then it stays applied, with no failure reason and no audit row.
    assert action is not None
    assert action.state == ActionState.APPLIED
    assert action.failure_reason == ""
    assert not AuditLog.objects.filter(object_id=str(action_id), verb="fail").exists()
