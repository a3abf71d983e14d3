"""Control cycle: an approval never applied stops holding its model at the deadline."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.control.fakes import NOW, FakeKube, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import Variant
from wva_web.control import actions
from wva_web.control.cycle import CycleService
from wva_web.control.models import ActionState, Decision, ScaleAction
from wva_web.integrations.kube import Actuator


@pytest.fixture
def saturated(make_model: Any, make_variant: Any, kube: FakeKube) -> FakeMetrics:
    """One variant A on L40S at 3 replicas, mode approval, every replica saturated."""
    make_variant(make_model(), "a", "L40S", max_replicas=8)
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    return FakeMetrics({f"a{i}": exposition(kv=0.9, waiting=1) for i in (1, 2, 3)})


@pytest.fixture
def resent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(actions, "_resend_apply", lambda pk, expires_s: sent.append(pk))
    return sent


def approved_at(seconds_before_now: float) -> int:
    """An approved 3 -> 4 of A that no apply task ever ran."""
    decided_at = NOW - dt.timedelta(seconds=seconds_before_now)
    action = ScaleAction.objects.create(
        variant=Variant.objects.get(name="a"),
        created_at=decided_at,
        from_replicas=3,
        to_replicas=4,
        state=ActionState.APPROVED,
        decided_at=decided_at,
    )
    return action.pk


def test_stuck_approval_fails_at_deadline(
    saturated: FakeMetrics,
    run_cycle: Any,
    resent: list[int],
    settings: Any,
) -> None:
    # Given a 600 s deadline and an approval of A made 601 s ago, never applied.
    settings.WVA_APPLY_DEADLINE_S = 600
    stuck = approved_at(601)
    # When the leader's cycle runs.
    cycle = run_cycle(saturated, NOW)
    # Then the approval failed with apply_timeout and is not queued again.
    action = ScaleAction.objects.get(pk=stuck)
    assert action.state == ActionState.FAILED
    assert action.failure_reason == "apply_timeout"
    assert stuck not in resent
    # And the same cycle analysed A freely and proposed 3 -> 4 again.
    row = Decision.objects.get(cycle=cycle, variant__name="a")
    assert row.bound_by != "transition"
    assert row.target_replicas == 4
    proposal = ScaleAction.objects.get(state=ActionState.PENDING)
    assert (proposal.from_replicas, proposal.to_replicas) == (3, 4)


def test_approval_before_deadline_still_held(
    saturated: FakeMetrics,
    run_cycle: Any,
    resent: list[int],
    settings: Any,
) -> None:
    # Given an approval of A made 599 s ago, inside the 600 s deadline.
    settings.WVA_APPLY_DEADLINE_S = 600
    stuck = approved_at(599)
    # When the cycle runs.
    run_cycle(saturated, NOW)
    # Then it stays approved, its apply is queued again, and nothing new is proposed.
    assert ScaleAction.objects.get(pk=stuck).state == ActionState.APPROVED
    assert resent == [stuck]
    assert not ScaleAction.objects.filter(state=ActionState.PENDING).exists()


def test_read_only_cycle_fails_stuck_approval(
    saturated: FakeMetrics,
    kube: FakeKube,
    resent: list[int],
    settings: Any,
) -> None:
    # Given an approval 601 s old, and a cycle of an instance that does not lead.
    settings.WVA_APPLY_DEADLINE_S = 600
    stuck = approved_at(601)
    actuator = Actuator(apps=kube, core=kube, autoscaling=kube)
    service = CycleService(
        metrics_source=saturated,
        actuator=actuator,
        clock=lambda: NOW,
        read_only=True,
    )
    # When it runs.
    service.run()
    # Then the approval failed with apply_timeout, and nothing was proposed.
    action = ScaleAction.objects.get(pk=stuck)
    assert action.state == ActionState.FAILED
    assert action.failure_reason == "apply_timeout"
    assert stuck not in resent
    assert not ScaleAction.objects.filter(state=ActionState.PENDING).exists()


def test_read_only_cycle_keeps_fresh_approval(
    saturated: FakeMetrics,
    kube: FakeKube,
    resent: list[int],
    settings: Any,
) -> None:
    # Given an approval 599 s old, and a cycle of an instance that does not lead.
    settings.WVA_APPLY_DEADLINE_S = 600
    fresh = approved_at(599)
    actuator = Actuator(apps=kube, core=kube, autoscaling=kube)
    service = CycleService(
        metrics_source=saturated,
        actuator=actuator,
        clock=lambda: NOW,
        read_only=True,
    )
    # When it runs.
    service.run()
    # Then the approval, inside its deadline, stays approved.
    assert ScaleAction.objects.get(pk=fresh).state == ActionState.APPROVED
