"""Control cycle: scale-down victims, terminating and starting replicas, holds."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.control.fakes import NOW, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import Variant
from wva_web.control import actions
from wva_web.control.models import AuditLog, Decision, ScaleAction, VariantState
from wva_web.integrations.kube import Actuator

COST = "controller.kubernetes.io/pod-deletion-cost"


def decision(cycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


def test_victim_marked_before_scale_patch(make_model, make_variant, kube, run_cycle):
    # Given a1 busy with a leftover deletion cost, a2 idle, a3 nearly idle.
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="auto")
    kube.add(
        "a",
        3,
        [
            FakePod("a1", annotations={COST: "-100"}),
            FakePod("a2"),
            FakePod("a3"),
        ],
    )
    bodies = {
        "a1": exposition(kv=0.55, waiting=0, running=14),
        "a2": exposition(kv=0.02, waiting=0, running=0),
        "a3": exposition(kv=0.10, waiting=0, running=3),
    }
    # When the cycle runs in mode auto.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then the decision is 3 to 2 with a2 as the victim.
    assert decision(cycle, "a").target_replicas == 2
    assert decision(cycle, "a").victim_pod == "a2"
    # And the calls are: reset a1, mark a2, patch the scale, then record the
    # previous count in the Deployment's annotations.
    writes = [call for call in kube.calls if call[0].startswith("patch")]
    assert writes == [
        ("patch_namespaced_pod", "a1", "None"),
        ("patch_namespaced_pod", "a2", "-1000"),
        ("patch_namespaced_deployment_scale", "a", "2"),
        ("patch_namespaced_deployment", "a", "annotations"),
    ]
    # And exactly a2 left.
    assert kube.pod_names("a") == ["a1", "a3"]
    action = ScaleAction.objects.get()
    assert action.state == "applied"
    assert action.victim_pod == "a2"
    assert AuditLog.objects.filter(verb="apply", object_id=str(action.pk)).count() == 1


def test_terminating_replicas_not_capacity(make_model, make_variant, kube, run_cycle):
    # Given one saturated ready replica and three terminating ones.
    model = make_model()
    make_variant(model, "a", "L40S")
    kube.add(
        "a",
        1,
        [FakePod("a1")] + [FakePod(f"a{i}", terminating=True) for i in (2, 3, 4)],
    )
    bodies = {"a1": exposition(kv=0.95, waiting=20)}
    bodies.update({f"a{i}": exposition(kv=0.30, waiting=0) for i in (2, 3, 4)})
    source = FakeMetrics(bodies)
    # When the cycle runs.
    cycle = run_cycle(source)
    # Then only a1 is scraped and A goes from 1 to 2.
    assert source.scraped == [["a1"]]
    assert decision(cycle, "a").target_replicas == 2
    action = ScaleAction.objects.get()
    assert (action.from_replicas, action.to_replicas) == (1, 2)


def test_starting_replica_blocks_more_scale_ups(
    make_model, make_variant, kube, run_cycle
):
    # Given two saturated replicas in mode auto, cycles every 15 s.
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="auto")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    bodies = {
        "a1": exposition(kv=0.92, waiting=9),
        "a2": exposition(kv=0.90, waiting=7),
    }
    source = FakeMetrics(bodies)
    # When the first cycle runs, then three more while the new pod is Pending.
    run_cycle(source, NOW)
    targets = []
    for step in (15, 30, 45):
        cycle = run_cycle(source, NOW + dt.timedelta(seconds=step))
        targets.append(decision(cycle, "a").target_replicas)
    # Then only the first cycle scaled, to 3.
    assert ScaleAction.objects.count() == 1
    assert ScaleAction.objects.get().to_replicas == 3
    assert kube.workloads["a"].replicas == 3
    assert targets == [3, 3, 3]
    # And when the new replica is ready with spare capacity at t = 60, nothing changes.
    new_pod = kube.workloads["a"].pods[-1]
    new_pod.phase, new_pod.ready = "Running", True
    source.pods[new_pod.name] = exposition(kv=0.30, waiting=0)
    cycle = run_cycle(source, NOW + dt.timedelta(seconds=60))
    assert decision(cycle, "a").target_replicas == 3
    assert ScaleAction.objects.count() == 1


def test_stuck_queues_hold_count(make_model, make_variant, kube, run_cycle):
    # Given seven replicas with queued requests, nothing running, KV empty.
    model = make_model()
    make_variant(model, "a", "L40S", mode="auto")
    waiting = [213, 78, 40, 32, 20, 12, 0]
    kube.add("a", 7, [FakePod(f"a{i}") for i in range(7)])
    bodies = {
        f"a{i}": exposition(kv=0.0, waiting=w, running=0) for i, w in enumerate(waiting)
    }
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then A stays at 7: no scale-up and too few non-saturated replicas.
    assert decision(cycle, "a").target_replicas == 7
    assert "scale_down:too_few_non_saturated" in decision(cycle, "a").reasons
    assert ScaleAction.objects.count() == 0


def test_capped_proposal_not_repeated(make_model, make_variant, kube, run_cycle):
    # Given A at its max of 4 with every replica saturated.
    model = make_model()
    make_variant(model, "a", "H100-80GB", max_replicas=4)
    kube.add("a", 4, [FakePod(f"a{i}") for i in range(4)])
    source = FakeMetrics({f"a{i}": exposition(kv=0.9, waiting=6) for i in range(4)})
    # When two cycles run 30 s apart.
    first = run_cycle(source, NOW)
    second = run_cycle(source, NOW + dt.timedelta(seconds=30))
    # Then no action is created, and the cap is explained.
    assert ScaleAction.objects.count() == 0
    assert decision(second, "a").bound_by == "max_replicas"
    assert "capped_by_max" in decision(first, "a").reasons
    assert decision(second, "a").message == "wants 5, capped at 4 (max)"
    # And ScalingLimited keeps its first since time.
    limited = VariantState.objects.get(variant__name="a").conditions[2]
    assert limited["type"] == "ScalingLimited"
    assert limited["status"] == "True"
    assert limited["reason"] == "capped_by_max"
    assert limited["since"] == NOW.isoformat()


def test_pending_proposal_not_duplicated(make_model, make_variant, kube, run_cycle):
    # Given a saturated variant in mode approval.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    source = FakeMetrics({"a1": exposition(kv=0.9), "a2": exposition(kv=0.9)})
    # When three cycles run without an approval.
    for step in (0, 30, 60):
        run_cycle(source, NOW + dt.timedelta(seconds=step))
    # Then one pending action 2 to 3 exists.
    action = ScaleAction.objects.get()
    assert (action.state, action.from_replicas, action.to_replicas) == ("pending", 2, 3)
    assert kube.workloads["a"].replicas == 2


def test_pinned_variant_holds(make_model, make_variant, kube, run_cycle):
    # Given a saturated variant pinned for another hour.
    model = make_model()
    make_variant(
        model,
        "a",
        "H100-80GB",
        mode="auto",
        pinned_replicas=2,
        pinned_until=NOW + dt.timedelta(hours=1),
    )
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    source = FakeMetrics({"a1": exposition(kv=0.9), "a2": exposition(kv=0.9)})
    # When the cycle runs.
    cycle = run_cycle(source)
    # Then it holds with reason pinned and no action.
    assert decision(cycle, "a").target_replicas == 2
    assert decision(cycle, "a").bound_by == "pinned"
    assert "pinned" in decision(cycle, "a").reasons
    assert ScaleAction.objects.count() == 0


def test_hpa_on_workload_moves_to_advisory(make_model, make_variant, kube, run_cycle):
    # Given an auto variant whose Deployment an HPA starts to target.
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="auto")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    kube.hpas["llm-hpa"] = "a"
    source = FakeMetrics({"a1": exposition(kv=0.9), "a2": exposition(kv=0.9)})
    # When the cycle runs.
    cycle = run_cycle(source)
    # Then the variant is advisory, with a condition naming the HPA.
    assert Variant.objects.get(name="a").mode == "advisory"
    able = VariantState.objects.get(variant__name="a").conditions[1]
    assert (able["type"], able["reason"]) == ("AbleToScale", "hpa_conflict")
    assert "llm-hpa" in able["message"]
    assert able["since"] == NOW.isoformat()
    # And the proposal is recorded without an action, and audited.
    assert decision(cycle, "a").target_replicas == 3
    assert "advisory" in decision(cycle, "a").reasons
    assert ScaleAction.objects.count() == 0
    assert AuditLog.objects.filter(verb="set_mode", object_type="variant").count() == 1
    assert kube.workloads["a"].replicas == 2


def test_manual_change_fails_approved_action(make_model, make_variant, kube, run_cycle):
    # Given a pending 2 to 3 proposal in mode approval.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    source = FakeMetrics({"a1": exposition(kv=0.9), "a2": exposition(kv=0.9)})
    run_cycle(source)
    action = ScaleAction.objects.get()
    # When someone scales to 6 by hand, and the action is approved and applied.
    kube.workloads["a"].replicas = 6
    actions.ScaleAction.objects.filter(pk=action.pk).update(state="approved")
    actuator = Actuator(apps=kube, core=kube, autoscaling=kube)
    result = actions.apply_action(action.pk, actuator=actuator)
    # Then it fails with base_changed and the count stays 6.
    assert result.state == "failed"
    assert result.failure_reason == "base_changed"
    assert result.message == "expected 2 replicas, found 6"
    assert kube.workloads["a"].replicas == 6
    # And the next cycle starts from 6.
    cycle = run_cycle(source, NOW + dt.timedelta(seconds=30))
    assert decision(cycle, "a").current_replicas == 6


def test_unknown_inventory_does_not_block(make_model, make_variant, kube, run_cycle):
    # Given listing nodes is forbidden and the model is saturated.
    model = make_model()
    make_variant(model, "a", "L40S")
    make_variant(model, "b", "H100-80GB")
    kube.add("a", 3, [FakePod(f"a{i}") for i in range(3)])
    kube.add("b", 2, [FakePod(f"b{i}") for i in range(2)])
    kube.failures["list_node"] = 403
    bodies = {f"a{i}": exposition(kv=0.9) for i in range(3)}
    bodies.update({f"b{i}": exposition(kv=0.9) for i in range(2)})
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then the inventory is unknown (null), and the cheapest variant grows.
    assert cycle.inputs["inventory"] is None
    assert "inventory_unknown" in {error["kind"] for error in cycle.errors}
    assert decision(cycle, "a").target_replicas == 4
    assert decision(cycle, "b").target_replicas == 2


@pytest.mark.parametrize("status", [403, 404, 503])
def test_kube_error_holds_model(make_model, make_variant, kube, run_cycle, status):
    # Given A read at 3 replicas by one cycle, then reading its scale fails.
    model = make_model()
    make_variant(model, "a", "L40S")
    kube.add("a", 3, [FakePod(f"a{i}") for i in range(3)])
    run_cycle(FakeMetrics({f"a{i}": exposition(kv=0.5) for i in range(3)}))
    kube.failures["read_namespaced_deployment_scale"] = status
    # When the next cycle runs.
    cycle = run_cycle(FakeMetrics({}), NOW + dt.timedelta(seconds=30))
    # Then the cycle is partial, holds at the last known 3, and makes no action.
    assert cycle.status == "partial"
    assert decision(cycle, "a").bound_by == "missing_data"
    assert decision(cycle, "a").current_replicas == 3
    assert decision(cycle, "a").target_replicas == 3
    assert "kube_unavailable" in decision(cycle, "a").reasons
    assert "kube_error:a" in decision(cycle, "a").reasons
    assert decision(cycle, "a").hpa_target_replicas is None
    assert ScaleAction.objects.count() == 0
