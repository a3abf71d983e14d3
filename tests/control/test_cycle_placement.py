"""Control cycle: pending timeouts, the GPU limiter and crash-looping replicas."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.control.fakes import NOW, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import Accelerator, Variant
from wva_web.control.models import AuditLog, Decision, ScaleAction, VariantState


def decision(cycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


def condition(variant: str, kind: str) -> dict:
    conditions = VariantState.objects.get(variant__name=variant).conditions
    return next(item for item in conditions if item["type"] == kind)


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def wva_v1_policy(settings):
    """Select `wva-v1`: these cases pin its one-replica steps and reason codes."""
    settings.WVA_POLICY = "wva-v1"


@pytest.fixture
def l40s_and_h100(make_model, make_variant, kube):
    """A on L40S at 3 and B on H100-80GB at 2, mode auto, every replica saturated."""
    model = make_model()
    make_variant(model, "a", "L40S", mode="auto", max_replicas=8)
    make_variant(model, "b", "H100-80GB", mode="auto", max_replicas=8)
    kube.add("a", 3, [FakePod(f"a{i}", node="l40s-0") for i in (1, 2, 3)])
    kube.add("b", 2, [FakePod(f"b{i}", node="h100-0") for i in (1, 2)])
    names = ["a1", "a2", "a3", "b1", "b2"]
    return FakeMetrics({name: exposition(kv=0.9, waiting=1) for name in names})


def nodes_full_l40s(kube) -> None:
    # Free L40S GPUs: 3 - 3 = 0. Free H100 GPUs: 6 - 2 = 4.
    kube.nodes = [("l40s-0", "L40S", 3), ("h100-0", "H100-80GB", 6)]


def test_pending_replica_counts_until_timeout(l40s_and_h100, kube, run_cycle, settings):
    # Given the limiter off and A 3 to 4 applied at t = 0, its pod stuck Pending.
    settings.WVA_GPU_LIMITER = False
    nodes_full_l40s(kube)
    first = run_cycle(l40s_and_h100, NOW)
    assert decision(first, "a").target_replicas == 4
    scale_up = ScaleAction.objects.get()
    assert scale_up.state == "applied"
    pending_pod = kube.pod_names("a")[-1]
    # When cycles run every 30 s up to t = 240 (pending for exactly the timeout).
    targets = []
    for step in range(30, 241, 30):
        cycle = run_cycle(l40s_and_h100, at(step))
        targets.append(
            (decision(cycle, "a").target_replicas, decision(cycle, "b").target_replicas)
        )
    # Then nothing more is added: the pending pod is capacity on its way.
    assert targets == [(4, 2)] * 8
    assert ScaleAction.objects.count() == 1
    assert kube.workloads["a"].replicas == 4
    assert pending_pod in kube.pod_names("a")


def test_pending_timeout_moves_replica(l40s_and_h100, kube, run_cycle, settings):
    # Given the limiter off and A 3 to 4 applied at t = 0, its pod stuck Pending.
    settings.WVA_GPU_LIMITER = False
    nodes_full_l40s(kube)
    run_cycle(l40s_and_h100, NOW)
    scale_up = ScaleAction.objects.get()
    pending_pod = kube.pod_names("a")[-1]
    for step in range(30, 241, 30):
        run_cycle(l40s_and_h100, at(step))
    # When the first cycle with the pod pending for longer than 240 s runs.
    cycle = run_cycle(l40s_and_h100, at(270))
    # Then the scale-up failed as unschedulable, with an audit row.
    scale_up.refresh_from_db()
    assert scale_up.state == "failed"
    assert scale_up.failure_reason == "unschedulable"
    assert (
        AuditLog.objects.filter(
            verb="fail",
            object_id=str(scale_up.pk),
            after__failure_reason="unschedulable",
        ).count()
        == 1
    )
    # And A goes back to 3 with the pending pod as the victim.
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "a").victim_pod == pending_pod
    assert "unschedulable" in decision(cycle, "a").reasons
    assert kube.workloads["a"].replicas == 3
    assert kube.pod_names("a") == ["a1", "a2", "a3"]
    # And the replica moves to B: 2 to 3.
    assert decision(cycle, "b").target_replicas == 3
    assert "unschedulable" in decision(cycle, "b").reasons
    moved = ScaleAction.objects.get(variant__name="b")
    assert (moved.from_replicas, moved.to_replicas, moved.state) == (2, 3, "applied")
    assert condition("a", "Schedulable")["reason"] == "unschedulable"


def test_pending_timeout_fails_action_once(l40s_and_h100, kube, run_cycle, settings):
    # Given the timed-out pod of A in mode approval, so the scale-back waits.
    settings.WVA_GPU_LIMITER = False
    nodes_full_l40s(kube)
    run_cycle(l40s_and_h100, NOW)
    scale_up = ScaleAction.objects.get()
    Variant.objects.filter(name__in=["a", "b"]).update(mode="approval")
    # When two cycles past the timeout run.
    run_cycle(l40s_and_h100, at(270))
    run_cycle(l40s_and_h100, at(300))
    # Then the scale-up failed once, and one scale-back is pending.
    assert AuditLog.objects.filter(verb="fail", object_id=str(scale_up.pk)).count() == 1
    back = ScaleAction.objects.get(variant__name="a", state="pending")
    assert (back.from_replicas, back.to_replicas) == (4, 3)
    assert kube.workloads["a"].replicas == 4


def test_limiter_moves_replica_to_free_gpus(l40s_and_h100, kube, run_cycle):
    # Given the limiter on and the nodes: free L40S 0, free H100 4.
    nodes_full_l40s(kube)
    # When the cycle runs.
    cycle = run_cycle(l40s_and_h100, NOW)
    # Then the first proposal is B 2 to 3 and nothing is added to A.
    assert decision(cycle, "b").target_replicas == 3
    assert "no_free_gpu:L40S" in decision(cycle, "b").reasons
    assert decision(cycle, "a").target_replicas == 3
    assert "no_free_gpu:L40S" in decision(cycle, "a").reasons
    action = ScaleAction.objects.get()
    assert action.variant.name == "b"
    assert (action.from_replicas, action.to_replicas) == (2, 3)
    assert kube.workloads["a"].replicas == 3
    # And the cycle inputs show both sides of the count.
    free = cycle.inputs["free_gpus"]
    assert free["L40S"] == {"nodes": 0, "budget": 5, "free": 0}
    assert free["H100-80GB"] == {"nodes": 4, "budget": 6, "free": 4}


def test_unknown_inventory_scales_cheapest(l40s_and_h100, kube, run_cycle):
    # Given listing nodes fails with 403 and no GPU budget is set.
    kube.failures["list_node"] = 403
    Accelerator.objects.update(gpus_available=None)
    # When the cycle runs.
    cycle = run_cycle(l40s_and_h100, NOW)
    # Then the cheapest variant grows, with reason inventory_unknown.
    assert decision(cycle, "a").target_replicas == 4
    assert "inventory_unknown" in decision(cycle, "a").reasons
    assert decision(cycle, "b").target_replicas == 2
    gpu = condition("a", "GpuAvailable")
    assert (gpu["status"], gpu["reason"]) == ("Unknown", "inventory_unknown")
    assert cycle.inputs["free_gpus"]["L40S"]["free"] is None


def test_budget_limits_without_inventory(l40s_and_h100, kube, run_cycle):
    # Given the nodes cannot be listed, but the L40S budget of 3 is used up.
    kube.failures["list_node"] = 403
    Accelerator.objects.filter(name="L40S").update(gpus_available=3)
    # When the cycle runs.
    cycle = run_cycle(l40s_and_h100, NOW)
    # Then the budget alone moves the replica to B.
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "b").target_replicas == 3
    assert "no_free_gpu:L40S" in decision(cycle, "b").reasons


def test_no_free_gpu_anywhere_holds(l40s_and_h100, kube, run_cycle):
    # Given no free GPU of either type on the nodes.
    kube.nodes = [("l40s-0", "L40S", 3), ("h100-0", "H100-80GB", 2)]
    # When the cycle runs.
    cycle = run_cycle(l40s_and_h100, NOW)
    # Then nothing changes and A is bound by the GPU budget.
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "b").target_replicas == 2
    assert decision(cycle, "a").bound_by == "gpu_budget"
    assert decision(cycle, "a").analysis["wanted_replicas"] == 4
    assert decision(cycle, "a").analysis["free_gpus"] == 0
    assert ScaleAction.objects.count() == 0
    limited = condition("a", "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "gpu_budget")


def test_limiter_off_ignores_free_gpus(l40s_and_h100, kube, run_cycle, settings):
    # Given the limiter off and no free L40S GPU.
    settings.WVA_GPU_LIMITER = False
    nodes_full_l40s(kube)
    # When the cycle runs.
    cycle = run_cycle(l40s_and_h100, NOW)
    # Then wva-v1 picks the cheapest variant as it is.
    assert decision(cycle, "a").target_replicas == 4
    assert decision(cycle, "b").target_replicas == 2


@pytest.fixture
def h100_and_h200(make_model, make_variant, kube):
    """A on H100-80GB (a1, a2 saturated), B on H200 with 2 GPUs at 0 replicas."""
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="auto")
    make_variant(
        model,
        "b",
        "H200",
        mode="auto",
        gpus_per_replica=2,
        min_replicas=0,
        max_replicas=4,
    )
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    kube.add("b", 0, [])
    return FakeMetrics(
        {
            "a1": exposition(kv=0.92, waiting=9),
            "a2": exposition(kv=0.90, waiting=7),
        }
    )


def test_crash_loop_moves_replica(h100_and_h200, kube, run_cycle):
    # Given A grew to 3 at t = 0 and the new replica was ready at t = 60.
    source = h100_and_h200
    run_cycle(source, NOW)
    new = kube.workloads["a"].pods[-1]
    for step in (15, 30, 45):
        run_cycle(source, at(step))
    new.phase, new.ready = "Running", True
    source.pods[new.name] = exposition(kv=0.30, waiting=0)
    steady = run_cycle(source, at(60))
    assert decision(steady, "a").target_replicas == 3
    # When the new replica crash-loops (3 restarts) by t = 90.
    new.ready, new.restarts, new.waiting_reason = False, 3, "CrashLoopBackOff"
    source.pods[new.name] = "connection_refused"
    cycle = run_cycle(source, at(90))
    # Then A does not grow and B goes from 0 to 1.
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "b").target_replicas == 1
    assert "crash_loop" in decision(cycle, "b").reasons
    assert kube.workloads["a"].replicas == 3
    assert kube.workloads["b"].replicas == 1
    # And A shows the crash loop.
    health = condition("a", "ReplicasHealthy")
    assert health["reason"] == "crash_loop"
    assert health["message"].startswith("2 ready, 1 CrashLoopBackOff")
    assert "crash_loop" in decision(cycle, "a").reasons


def test_restarts_without_ready_are_crash_loop(h100_and_h200, kube, run_cycle):
    # Given a third replica of A, Running and not Ready after 3 restarts.
    kube.workloads["a"].replicas = 3
    kube.workloads["a"].pods.append(FakePod("a3", ready=False, restarts=3))
    h100_and_h200.pods["a3"] = "connection_refused"
    # When the cycle runs.
    cycle = run_cycle(h100_and_h200, NOW)
    # Then a3 is neither capacity nor missing data, and B takes the replica.
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "b").target_replicas == 1
    pods = cycle.inputs["variants"]["a"]["pods"]
    assert next(p for p in pods if p["name"] == "a3")["flags"] == ["crash_loop"]


def test_wva_load_drop_removes_pending_first(
    make_model, make_variant, kube, run_cycle, settings
):
    # Given wva, A on L40S at 4 with a4 Pending (no free L40S GPU), B at 2,
    # and a load that the three ready A replicas and B absorb easily.
    settings.WVA_POLICY = "wva"
    model = make_model()
    make_variant(model, "a", "L40S", mode="auto", max_replicas=8)
    make_variant(model, "b", "H100-80GB", mode="auto", max_replicas=8)
    pods = [FakePod(f"a{i}", node="l40s-0") for i in (1, 2, 3)]
    pods.append(
        FakePod("a4", phase="Pending", ready=False, node="", created_at=at(-60))
    )
    kube.add("a", 4, pods)
    kube.add("b", 2, [FakePod(f"b{i}", node="h100-0") for i in (1, 2)])
    nodes_full_l40s(kube)
    names = ["a1", "a2", "a3", "b1", "b2"]
    low = FakeMetrics({name: exposition(kv=0.05, waiting=0) for name in names})
    # When a cycle runs.
    cycle = run_cycle(low, NOW)
    # Then A goes back to 3 by removing the replica that serves nothing.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert row.victim_pod == "a4"
    assert "scale_down:pending_first" in row.reasons
    assert decision(cycle, "b").target_replicas == 2
