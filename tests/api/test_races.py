"""Races between two requests, run with real threads on PostgreSQL.

Each request runs in its own thread with its own database connection. A
barrier placed between the read and the conditional write of the code under
test makes both requests read the same state before either writes, which is
where a lost update would show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from rest_framework.test import APIClient

from tests.actions.builders import FakeActuator, make_user
from tests.actions.conftest import World
from tests.conftest import skip_or_fail
from wva_web.catalog import forms
from wva_web.catalog.models import Variant
from wva_web.control import actions
from wva_web.control.models import ActionState, AuditLog, ScaleAction

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

REPETITIONS = 50
BARRIER_TIMEOUT_S = 10.0


@pytest.fixture(autouse=True)
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        skip_or_fail("needs PostgreSQL: set DATABASE_URL")


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread and connection, and return the results."""
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            results[index] = call()
        except BaseException as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=run, args=(index, call))
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def pause_after(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, barrier: threading.Barrier
) -> None:
    """Make `owner.name` wait at the barrier after it returns."""
    original = getattr(owner, name)

    def paused(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        return result

    monkeypatch.setattr(owner, name, paused)


def pause_before(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, barrier: threading.Barrier
) -> None:
    """Make `owner.name` wait at the barrier before it runs."""
    original = getattr(owner, name)

    def paused(*args: Any, **kwargs: Any) -> Any:
        barrier.wait(timeout=BARRIER_TIMEOUT_S)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, paused)


def approve_over_api(user: User, action_id: int) -> Callable[[], Any]:
    def call() -> Any:
        client = APIClient()
        client.force_authenticate(user)
        return client.post(f"/api/v1/scale-actions/{action_id}/approve/")

    return call


def approval_count(action_id: int) -> int:
    return AuditLog.objects.filter(
        object_type="scale_action", object_id=str(action_id), verb="approve"
    ).count()


def test_two_approvals_one_wins(
    world: World, queued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given P (A 3->4) pending and two approvers of team-a
    second_approver = make_user("u4", world.team_a, "approver")
    actuator = FakeActuator(replicas={world.variant_a.name: 3})
    for _ in range(REPETITIONS):
        barrier = threading.Barrier(2)
        monkeypatch.undo()
        monkeypatch.setattr(actions, "_send_apply", queued.append)
        pause_after(monkeypatch, actions, "_check_decider", barrier)
        actuator.replicas[world.variant_a.name] = 3
        proposal = actions.propose_action(world.variant_a.pk, 3, 4)
        queued.clear()
        # when both approve at the same moment
        first, second = run_together(
            approve_over_api(world.u2, proposal.pk),
            approve_over_api(second_approver, proposal.pk),
        )
        # then one 200, one 409 "already approved", one audit row, one task
        codes = sorted([first.status_code, second.status_code])
        loser = first if first.status_code == 409 else second
        assert codes == [200, 409]
        assert "already approved" in loser.json()["detail"]
        assert approval_count(proposal.pk) == 1
        assert queued == [proposal.pk]
        applied = actions.apply_action(queued[0], actuator=actuator)
        assert applied.state == ActionState.APPLIED
        assert actuator.replicas[world.variant_a.name] == 4


def test_approval_against_supersede_one_outcome(
    world: World, queued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    approver_two = make_user("u4", world.team_a, "approver")
    actuator = FakeActuator()
    outcomes: set[str] = set()
    for _ in range(REPETITIONS):
        barrier = threading.Barrier(2)
        monkeypatch.undo()
        monkeypatch.setattr(actions, "_send_apply", queued.append)
        pause_after(monkeypatch, actions, "_check_decider", barrier)
        pause_before(monkeypatch, actions, "_supersede", barrier)
        # given P (A 3->4) pending, and a cycle about to propose P' (A 3->5)
        ScaleAction.objects.filter(state=ActionState.PENDING).update(
            state=ActionState.EXPIRED
        )
        actuator.replicas[world.variant_a.name] = 3
        proposal = actions.propose_action(world.variant_a.pk, 3, 4)
        queued.clear()
        response, newer = run_together(
            approve_over_api(world.u2, proposal.pk),
            lambda: actions.propose_action(world.variant_a.pk, 3, 5),
        )
        monkeypatch.undo()
        monkeypatch.setattr(actions, "_send_apply", queued.append)
        # when whatever was approved is applied, then P' is approved and applied
        for action_id in list(queued):
            actions.apply_action(action_id, actuator=actuator)
        actions.approve_action(newer.pk, approver_two)
        late = actions.apply_action(newer.pk, actuator=actuator)
        proposal.refresh_from_db()
        replicas = actuator.replicas[world.variant_a.name]
        if response.status_code == 200:
            # then P landed first and P' found a changed base
            outcomes.add("approved")
            assert proposal.state == ActionState.APPLIED
            assert late.state == ActionState.FAILED
            assert late.failure_reason == "base_changed"
            assert replicas == 4
        else:
            # or P was superseded first and only P' landed
            outcomes.add("superseded")
            assert response.status_code == 409
            assert "superseded" in response.json()["detail"]
            assert proposal.state == ActionState.SUPERSEDED
            assert late.state == ActionState.APPLIED
            assert replicas == 5
    assert outcomes


def test_duplicate_workload_race_one_created(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_user = world.u1
    for index in range(10):
        barrier = threading.Barrier(2)
        monkeypatch.undo()
        pause_after(monkeypatch, forms, "duplicate_workload_error", barrier)
        workload = f"shared-{index}"

        def create(name: str, workload: str = workload) -> Callable[[], Any]:
            def call() -> Any:
                client = APIClient()
                client.force_authenticate(client_user)
                payload = {
                    "name": name,
                    "model": world.variant_a.model_id,
                    "accelerator": "H100-80GB",
                    "namespace": "llm",
                    "workload_name": workload,
                }
                return client.post("/api/v1/variants/", payload, format="json")

            return call

        first, second = run_together(create(f"one-{index}"), create(f"two-{index}"))
        codes = sorted([first.status_code, second.status_code])
        assert codes == [201, 409]
        assert Variant.objects.filter(workload_name=workload).count() == 1
