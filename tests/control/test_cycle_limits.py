"""Control cycle: pins, cool-downs, the HPA's max and held proposals."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone

from tests.control.fakes import NOW, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import Variant
from wva_web.control import actions, safety_actions
from wva_web.control.models import (
    ActionState,
    AuditLog,
    Decision,
    ScaleAction,
    VariantState,
)
from wva_web.integrations import kube as kube_module


def decision(cycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


def condition(variant: str, kind: str) -> dict:
    conditions = VariantState.objects.get(variant__name=variant).conditions
    return next(item for item in conditions if item["type"] == kind)


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


@pytest.fixture
def two_variants(make_model, make_variant, kube):
    """A on L40S at 3 and B on H100-80GB at 2, mode approval, all saturated."""
    model = make_model()
    make_variant(model, "a", "L40S", max_replicas=8)
    make_variant(model, "b", "H100-80GB", max_replicas=8)
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    kube.add("b", 2, [FakePod(f"b{i}") for i in (1, 2)])
    names = ["a1", "a2", "a3", "b1", "b2"]
    return FakeMetrics({name: exposition(kv=0.9, waiting=1) for name in names})


def reject(action: ScaleAction, decided_at: dt.datetime) -> None:
    """Reject the action as an approver would, at the given time."""
    ScaleAction.objects.filter(pk=action.pk).update(
        state=ActionState.REJECTED, decided_at=decided_at
    )


# Pinned variants.


def test_pinned_cheapest_passes_replica_on(two_variants, run_cycle):
    # Given the cheapest variant A pinned for another hour.
    Variant.objects.filter(name="a").update(
        pinned_replicas=3, pinned_until=NOW + dt.timedelta(hours=1)
    )
    # When the saturated model runs a cycle.
    cycle = run_cycle(two_variants, NOW)
    # Then B, the next-cheapest, gets the replica.
    assert decision(cycle, "b").target_replicas == 3
    action = ScaleAction.objects.get()
    assert action.variant.name == "b"
    assert (action.from_replicas, action.to_replicas) == (2, 3)
    # And A holds with reason pinned.
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "a").reasons.count("pinned") == 1
    assert decision(cycle, "a").bound_by == "pinned"


def test_expired_pin_grows_again(two_variants, run_cycle):
    # Given A's pin ended a second before the cycle.
    Variant.objects.filter(name="a").update(
        pinned_replicas=3, pinned_until=NOW - dt.timedelta(seconds=1)
    )
    # When the cycle runs.
    cycle = run_cycle(two_variants, NOW)
    # Then A, the cheapest, grows as usual.
    assert decision(cycle, "a").target_replicas == 4
    assert decision(cycle, "b").target_replicas == 2


def test_pinned_only_variant_held_as_pinned(make_model, make_variant, kube, run_cycle):
    # Given one saturated variant, pinned, far below its max.
    model = make_model()
    make_variant(
        model, "a", "L40S", pinned_replicas=2, pinned_until=NOW + dt.timedelta(hours=1)
    )
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    source = FakeMetrics({n: exposition(kv=0.9, waiting=1) for n in ("a1", "a2")})
    # When the cycle runs.
    cycle = run_cycle(source, NOW)
    # Then it holds as pinned, not as capped by its max of 8.
    assert decision(cycle, "a").target_replicas == 2
    assert "pinned" in decision(cycle, "a").reasons
    assert "capped_by_max" not in decision(cycle, "a").reasons
    assert ScaleAction.objects.count() == 0


# Rejection cool-down.


def test_rejected_scale_up_not_proposed_again(two_variants, run_cycle):
    # Given the cycle proposed A 3 to 4 and an approver rejected it 60 s later.
    run_cycle(two_variants, NOW)
    first = ScaleAction.objects.get()
    reject(first, at(60))
    # When the next cycle runs at t = 90 with the same load.
    cycle = run_cycle(two_variants, at(90))
    # Then nothing new is proposed, for A or for B.
    assert ScaleAction.objects.count() == 1
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "b").target_replicas == 2
    # And A carries the reason and a ScalingLimited condition.
    assert "rejected_recently" in decision(cycle, "a").reasons
    assert decision(cycle, "a").bound_by == "rejected_recently"
    limited = condition("a", "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "rejected_recently")
    assert decision(cycle, "a").analysis["wanted_replicas"] == 4


def test_rejection_cool_down_ends(two_variants, run_cycle, settings):
    # Given a 600 s cool-down and A 3 to 4 rejected at t = 60.
    settings.WVA_REJECT_COOLDOWN_S = 600
    run_cycle(two_variants, NOW)
    reject(ScaleAction.objects.get(), at(60))
    # When cycles run at t = 659 and t = 661.
    inside = run_cycle(two_variants, at(659))
    after = run_cycle(two_variants, at(661))
    # Then the first still holds and the second proposes A 3 to 4 again.
    assert decision(inside, "a").target_replicas == 3
    assert decision(after, "a").target_replicas == 4
    assert ScaleAction.objects.filter(state="pending").count() == 1


def test_rejected_reduction_holds_reduction(make_model, make_variant, kube, run_cycle):
    # Given three idle replicas and a rejected reduction 3 to 2.
    model = make_model()
    variant = make_variant(model, "a", "H100-80GB")
    kube.add("a", 3, [FakePod(f"a{i}") for i in range(3)])
    source = FakeMetrics({f"a{i}": exposition(kv=0.1, waiting=0) for i in range(3)})
    rejected = ScaleAction.objects.create(
        variant=variant,
        created_at=NOW,
        from_replicas=3,
        to_replicas=2,
        state=ActionState.REJECTED,
        decided_at=at(-30),
    )
    # When the cycle runs.
    cycle = run_cycle(source, NOW)
    # Then the reduction is held and nothing new is pending.
    assert decision(cycle, "a").target_replicas == 3
    assert "rejected_recently" in decision(cycle, "a").reasons
    assert decision(cycle, "a").victim_pod == ""
    assert list(ScaleAction.objects.values_list("pk", flat=True)) == [rejected.pk]


def test_rejected_reduction_allows_scale_up(make_model, make_variant, kube, run_cycle):
    # Given a rejected reduction, then the replicas saturate.
    model = make_model()
    variant = make_variant(model, "a", "H100-80GB")
    kube.add("a", 3, [FakePod(f"a{i}") for i in range(3)])
    source = FakeMetrics({f"a{i}": exposition(kv=0.9, waiting=1) for i in range(3)})
    ScaleAction.objects.create(
        variant=variant,
        created_at=NOW,
        from_replicas=3,
        to_replicas=2,
        state=ActionState.REJECTED,
        decided_at=at(-30),
    )
    # When the cycle runs.
    cycle = run_cycle(source, NOW)
    # Then the other direction is proposed.
    assert decision(cycle, "a").target_replicas == 4
    assert "rejected_recently" not in decision(cycle, "a").reasons


def test_rejected_scale_up_holds_larger_one(make_model, make_variant, kube, run_cycle):
    # Given a rejected 2 to 3 on A, and B with a replica Pending past the timeout.
    model = make_model()
    a = make_variant(model, "a", "L40S")
    make_variant(model, "b", "H100-80GB")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    kube.add(
        "b",
        2,
        [
            FakePod("b1"),
            FakePod("b2", phase="Pending", ready=False, created_at=at(-600)),
        ],
    )
    source = FakeMetrics({n: exposition(kv=0.5, waiting=1) for n in ("a1", "a2", "b1")})
    ScaleAction.objects.create(
        variant=a,
        created_at=NOW,
        from_replicas=2,
        to_replicas=3,
        state=ActionState.REJECTED,
        decided_at=at(-30),
    )
    # When the cycle scales B back and looks for a variant to take the replica.
    cycle = run_cycle(source, NOW)
    # Then A, in its cool-down, does not take it.
    assert decision(cycle, "b").target_replicas == 1
    assert decision(cycle, "a").target_replicas == 2
    assert not ScaleAction.objects.filter(variant=a, state="pending").exists()


# Unschedulable memory.


def failed_unschedulable(variant_name: str, current: int, moment: dt.datetime) -> None:
    """Record an applied scale-up to `current` that failed as unschedulable."""
    variant = Variant.objects.get(name=variant_name)
    ScaleAction.objects.create(
        variant=variant,
        created_at=moment,
        from_replicas=current,
        to_replicas=current + 1,
        state=ActionState.APPLIED,
        applied_at=moment,
    )
    failed = safety_actions.fail_unschedulable(
        variant, current + 1, [f"{variant_name}-new"], moment
    )
    assert failed is not None


def test_unschedulable_variant_skipped(two_variants, run_cycle):
    # Given A's scale-up failed as unschedulable 60 s ago.
    failed_unschedulable("a", 3, at(-60))
    # When the saturated model runs a cycle.
    cycle = run_cycle(two_variants, NOW)
    # Then B gets the replica, and A records the reason it did not.
    assert decision(cycle, "b").target_replicas == 3
    assert decision(cycle, "a").target_replicas == 3
    assert "unschedulable_recently" in decision(cycle, "a").reasons
    pending = ScaleAction.objects.get(state="pending")
    assert pending.variant.name == "b"
    limited = condition("a", "ScalingLimited")
    assert limited["reason"] == "unschedulable_recently"


def test_unschedulable_memory_ends(two_variants, run_cycle, settings):
    # Given a 600 s memory and A's scale-up failed at t = 0.
    settings.WVA_UNSCHEDULABLE_COOLDOWN_S = 600
    failed_unschedulable("a", 3, NOW)
    # When the cycle runs at t = 601.
    cycle = run_cycle(two_variants, at(601))
    # Then A, the cheapest, grows again.
    assert decision(cycle, "a").target_replicas == 4
    assert decision(cycle, "b").target_replicas == 2
    assert "unschedulable_recently" not in decision(cycle, "a").reasons


def test_unschedulable_flow_goes_to_next(
    make_model, make_variant, kube, run_cycle, settings
):
    # Given A (L40S, auto) grew 3 to 4 at t = 0 and its pod never got a GPU.
    settings.WVA_GPU_LIMITER = False
    model = make_model()
    make_variant(model, "a", "L40S", mode="auto")
    make_variant(model, "b", "H100-80GB", mode="auto")
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    kube.add("b", 2, [FakePod(f"b{i}") for i in (1, 2)])
    names = ["a1", "a2", "a3", "b1", "b2"]
    source = FakeMetrics({name: exposition(kv=0.9, waiting=1) for name in names})
    run_cycle(source, NOW)
    for step in range(30, 271, 30):
        run_cycle(source, at(step))
    # When B's new replica is ready at t = 300, still saturated.
    new_b = kube.workloads["b"].pods[-1]
    new_b.phase, new_b.ready = "Running", True
    source.pods[new_b.name] = exposition(kv=0.9, waiting=1)
    cycle = run_cycle(source, at(300))
    # Then the next replica goes to B again, not back to A.
    assert decision(cycle, "a").target_replicas == 3
    assert "unschedulable_recently" in decision(cycle, "a").reasons
    assert decision(cycle, "b").target_replicas == 4
    assert kube.workloads["a"].replicas == 3
    assert kube.workloads["b"].replicas == 4


# The HPA's maxReplicas.


def test_hpa_max_caps_target(make_model, make_variant, kube, run_cycle):
    # Given A (max 8) at 4, scaled by HPA hpa-a with maxReplicas 4, saturated.
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="advisory", max_replicas=8)
    kube.add("a", 4, [FakePod(f"a{i}") for i in range(4)])
    kube.hpas["hpa-a"] = "a"
    kube.hpa_max["hpa-a"] = 4
    source = FakeMetrics({f"a{i}": exposition(kv=0.9, waiting=6) for i in range(4)})
    # When the cycle runs.
    cycle = run_cycle(source, NOW)
    # Then the target stays at the HPA's max, with its own reason code.
    row = decision(cycle, "a")
    assert row.target_replicas == 4
    assert "capped_by_hpa_max" in row.reasons
    assert "capped_by_max" not in row.reasons
    assert row.bound_by == "hpa_max_replicas"
    assert row.message == "wants 5, capped at 4 (HPA hpa-a maxReplicas)"
    limited = condition("a", "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "capped_by_hpa_max")
    assert VariantState.objects.get(variant__name="a").desired_replicas == 4


def test_hpa_max_passes_replica_on(two_variants, kube, run_cycle):
    # Given an HPA on A with maxReplicas 3, A already at 3.
    Variant.objects.filter(name="a").update(mode="advisory")
    kube.hpas["hpa-a"] = "a"
    kube.hpa_max["hpa-a"] = 3
    # When the saturated model runs a cycle.
    cycle = run_cycle(two_variants, NOW)
    # Then B gets the replica and A names the HPA's max.
    assert decision(cycle, "b").target_replicas == 3
    assert decision(cycle, "a").target_replicas == 3
    assert "capped_by_hpa_max" in decision(cycle, "a").reasons


def test_hpa_max_above_variant_max_ignored(make_model, make_variant, kube, run_cycle):
    # Given A (max 4) at 4 and an HPA with maxReplicas 10.
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="advisory", max_replicas=4)
    kube.add("a", 4, [FakePod(f"a{i}") for i in range(4)])
    kube.hpas["hpa-a"] = "a"
    source = FakeMetrics({f"a{i}": exposition(kv=0.9, waiting=6) for i in range(4)})
    # When the cycle runs.
    cycle = run_cycle(source, NOW)
    # Then the variant's own max binds.
    assert "capped_by_max" in decision(cycle, "a").reasons
    assert "capped_by_hpa_max" not in decision(cycle, "a").reasons


def test_hpa_status_reads_max_replicas(kube):
    # Given an HPA with maxReplicas 6 on workload a.
    kube.hpas["hpa-a"] = "a"
    kube.hpa_max["hpa-a"] = 6
    actuator = kube_module.Actuator(apps=kube, core=kube, autoscaling=kube)
    workload = Variant(name="a", namespace="llm", kind="Deployment", workload_name="a")
    # When its status is read.
    status = actuator.read_hpa_status(workload)
    # Then maxReplicas is part of it.
    assert status is not None
    assert status.max_replicas == 6


# Held scale-ups supersede older proposals.


def test_stuck_queue_supersedes_pending_scale_up(
    make_model, make_variant, kube, run_cycle, settings
):
    # Given a pending A 2 to 3 proposed when both replicas were saturated.
    settings.WVA_STUCK_QUEUE_S = 60
    model = make_model()
    make_variant(model, "a", "L40S")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    busy = {n: exposition(kv=0.9, waiting=6, running=4) for n in ("a1", "a2")}
    source = FakeMetrics(busy)
    run_cycle(source, NOW)
    older = ScaleAction.objects.get()
    assert older.state == "pending"
    # When the queues stop progressing for longer than 60 s.
    source.pods = {n: exposition(kv=0.0, waiting=6, running=0) for n in ("a1", "a2")}
    for step in (30, 60, 90):
        cycle = run_cycle(source, at(step))
    # Then the scale-up is held and the older proposal is superseded, with audit.
    assert decision(cycle, "a").target_replicas == 2
    assert "queue_without_progress" in decision(cycle, "a").reasons
    older.refresh_from_db()
    assert older.state == "superseded"
    assert older.message == "scale-up held by the control cycle: queue_without_progress"
    audit = AuditLog.objects.filter(verb="supersede", object_id=str(older.pk))
    assert audit.count() == 1
    assert not ScaleAction.objects.filter(state="pending").exists()


@pytest.mark.parametrize("policy", ["wva", "wva-v1"])
def test_no_free_gpu_supersedes_pending_scale_up(
    two_variants, kube, run_cycle, settings, policy
):
    # Given a pending A 3 to 4, then the L40S nodes fill up.
    settings.WVA_POLICY = policy
    run_cycle(two_variants, NOW)
    older = ScaleAction.objects.get()
    kube.nodes = [("node-1", "L40S", 3), ("node-2", "H100-80GB", 6)]
    # When the next cycle runs.
    run_cycle(two_variants, at(30))
    # Then the proposal on A is superseded and B's is pending.
    older.refresh_from_db()
    assert older.state == "superseded"
    assert "no_free_gpu:L40S" in older.message
    pending = ScaleAction.objects.get(state="pending")
    assert pending.variant.name == "b"


def test_held_scale_up_keeps_manual_request(two_variants, run_cycle, django_user_model):
    # Given a person's pending request A 3 to 5 and a rejected cycle proposal.
    person = django_user_model.objects.create_user("op")
    run_cycle(two_variants, NOW)
    reject(ScaleAction.objects.get(), at(10))
    manual = ScaleAction.objects.create(
        variant=Variant.objects.get(name="a"),
        created_at=at(20),
        from_replicas=3,
        to_replicas=5,
        requested_by=person,
    )
    # When the cycle holds A's scale-up for the cool-down.
    run_cycle(two_variants, at(30))
    # Then the person's request stays pending.
    manual.refresh_from_db()
    assert manual.state == "pending"


# One log line per notable decision.


def decision_lines(caplog, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wva_web.control.cycle_log" and r.levelno == level
    ]


def test_decision_line_rate_limited(make_model, make_variant, kube, run_cycle, caplog):
    # Given A capped at its max of 4 while saturated.
    model = make_model()
    make_variant(model, "a", "H100-80GB", max_replicas=4)
    kube.add("a", 4, [FakePod(f"a{i}") for i in range(4)])
    source = FakeMetrics({f"a{i}": exposition(kv=0.9, waiting=6) for i in range(4)})
    # When three cycles run with the same result.
    with caplog.at_level(logging.DEBUG, logger="wva_web.control.cycle_log"):
        for step in (0, 30, 60):
            cycle = run_cycle(source, at(step))
    # Then one INFO line carries the Decision's codes, and the repeats are DEBUG.
    row = decision(cycle, "a")
    expected = (
        f"decision variant=a current=4 target=4 reasons={','.join(row.reasons)} "
        "bound_by=max_replicas"
    )
    assert decision_lines(caplog, logging.INFO) == [expected]
    assert decision_lines(caplog, logging.DEBUG) == [expected, expected]


def test_decision_line_on_change(two_variants, run_cycle, caplog):
    # Given a first cycle that proposes A 3 to 4.
    with caplog.at_level(logging.DEBUG, logger="wva_web.control.cycle_log"):
        run_cycle(two_variants, NOW)
        reject(ScaleAction.objects.get(), at(10))
        # When the next cycle holds A for the rejection.
        run_cycle(two_variants, at(30))
    # Then both decisions are logged at INFO, B's steady state not at all.
    lines = decision_lines(caplog, logging.INFO)
    assert lines[0].startswith("decision variant=a current=3 target=4 ")
    assert lines[1].startswith("decision variant=a current=3 target=3 ")
    assert "rejected_recently" in lines[1]
    assert "bound_by=rejected_recently" in lines[1]
    assert len(lines) == 2
    assert decision_lines(caplog, logging.DEBUG) == []


# Read-only cycles.


def test_read_only_cycle_proposes_nothing(two_variants, kube, accelerators):
    # Given a standby instance's cycle service.
    from wva_web.control.cycle import CycleService

    actuator = kube_module.Actuator(apps=kube, core=kube, autoscaling=kube)
    service = CycleService(
        metrics_source=two_variants,
        actuator=actuator,
        clock=lambda: NOW,
        read_only=True,
        leader="console-1",
    )
    Variant.objects.filter(name="b").update(mode="auto")
    kube.hpas["hpa-b"] = "b"
    # When it runs a cycle of the saturated model.
    cycle = service.run()
    # Then the decision and the variant state are stored.
    assert decision(cycle, "a").target_replicas == 4
    assert VariantState.objects.get(variant__name="a").proposed_replicas == 4
    # And nothing is proposed or written to the cluster, and no mode changes.
    assert ScaleAction.objects.count() == 0
    assert not [call for call in kube.calls if call[0].startswith("patch")]
    assert Variant.objects.get(name="b").mode == "auto"
    # And the cycle row records that it was read-only, and the leader.
    assert cycle.outputs["read_only"] is True
    assert cycle.outputs["leader"] == "console-1"


# Approved actions that were never applied.


@pytest.fixture
def resent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float]]:
    sent: list[tuple[int, float]] = []
    monkeypatch.setattr(
        actions, "_resend_apply", lambda pk, expires_s: sent.append((pk, expires_s))
    )
    return sent


def approved(variant: str, decided_at: dt.datetime, state: str = "approved") -> int:
    action = ScaleAction.objects.create(
        variant=Variant.objects.get(name=variant),
        created_at=decided_at,
        from_replicas=3,
        to_replicas=4,
        state=state,
        decided_at=decided_at,
    )
    return action.pk


def test_unapplied_approval_requeued(two_variants, run_cycle, resent, settings):
    # Given a 30 s period, an approval 61 s old, an override 90 s old, one 59 s old.
    settings.WVA_CYCLE_PERIOD_S = 30
    old = approved("a", at(-61))
    overridden = approved("b", at(-90), state="overridden")
    approved("a", at(-59))
    # When the leader's cycle runs.
    run_cycle(two_variants, NOW)
    # Then the two older ones are queued again, each message expiring in 60 s.
    assert resent == [(overridden, 60.0), (old, 60.0)]


def test_read_only_cycle_requeues_nothing(two_variants, kube, resent):
    # Given an approval 10 minutes old.
    from wva_web.control.cycle import CycleService

    approved("a", at(-600))
    actuator = kube_module.Actuator(apps=kube, core=kube, autoscaling=kube)
    service = CycleService(
        metrics_source=two_variants,
        actuator=actuator,
        clock=lambda: NOW,
        read_only=True,
    )
    # When a read-only cycle runs.
    service.run()
    # Then nothing is queued.
    assert resent == []


def test_requeue_sends_expiring_task(db, monkeypatch):
    # Given the apply task's apply_async recorded.
    from wva_web.control import tasks

    calls = []
    monkeypatch.setattr(
        tasks.apply_scale_action,
        "apply_async",
        lambda args, **options: calls.append((args, options)),
    )
    # When an action's apply is sent again.
    actions._resend_apply(7, 60.0)
    # Then the message carries the id and expires after 60 s.
    assert calls == [((7,), {"expires": 60.0})]


def test_requeued_apply_is_idempotent(two_variants, run_cycle, kube):
    # Given an approved A 3 to 4 applied once through the requeued path.
    pk = approved("a", timezone.now())
    actuator = kube_module.Actuator(apps=kube, core=kube, autoscaling=kube)
    first = actions.apply_action(pk, actuator=actuator)
    # When a second copy of the apply runs.
    second = actions.apply_action(pk, actuator=actuator)
    # Then the count was set once.
    assert first.state == "applied"
    assert second.state == "applied"
    patches = [c for c in kube.calls if c[0] == "patch_namespaced_deployment_scale"]
    assert patches == [("patch_namespaced_deployment_scale", "a", "4")]
