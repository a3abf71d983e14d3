"""Control cycle: a Kubernetes outage holds the last known counts, never 0."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.control.fakes import NOW, FakeKube, FakeMetrics, FakePod, exposition
from wva_web.control.models import (
    AcceleratorSample,
    ControlCycle,
    Decision,
    ScaleAction,
    VariantState,
)

# Every Kubernetes read the cycle makes.
READS = (
    "read_namespaced_deployment_scale",
    "read_namespaced_deployment",
    "list_namespaced_pod",
    "list_namespaced_horizontal_pod_autoscaler",
    "list_node",
    "list_pod_for_all_namespaces",
)


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def decision(cycle: ControlCycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


def state(variant: str) -> VariantState:
    return VariantState.objects.get(variant__name=variant)


def fail_reads(
    kube: FakeKube, status: int = 500, calls: tuple[str, ...] = READS
) -> None:
    for call in calls:
        kube.failures[call] = status


@pytest.fixture
def serving(make_model: Any, make_variant: Any, kube: FakeKube) -> FakeMetrics:
    """A on H100-80GB at 4 and B on A100-80GB at 3, min 1, serving moderate load."""
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="auto")
    make_variant(model, "b", "A100-80GB", mode="auto")
    kube.add("a", 4, [FakePod(f"a{i}") for i in range(4)])
    kube.add("b", 3, [FakePod(f"b{i}") for i in range(3)])
    names = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(3)]
    body = exposition(kv=0.65, waiting=1, running=6)
    return FakeMetrics(dict.fromkeys(names, body))


@pytest.mark.parametrize("status", [500, 503])
def test_outage_holds_last_counts(
    serving: FakeMetrics, kube: FakeKube, run_cycle: Any, status: int
) -> None:
    # Given one good cycle that read A at 4 and B at 3.
    first = run_cycle(serving, NOW)
    published_at = state("a").desired_published_at
    assert decision(first, "a").target_replicas == 4
    # When every Kubernetes read fails for three cycles.
    fail_reads(kube, status)
    cycles = [run_cycle(serving, at(30 * n)) for n in (1, 2, 3)]
    # Then each decision records the last known counts with kube_unavailable.
    for cycle in cycles:
        for name, count in (("a", 4), ("b", 3)):
            row = decision(cycle, name)
            assert row.current_replicas == count
            assert row.target_replicas == count
            assert "kube_unavailable" in row.reasons
            assert row.bound_by == "missing_data"
            assert row.message == (
                f"replica count unknown: reading the workload failed "
                f"(http_{status}), so the variant holds at its last desired "
                f"count {count}"
            )
    # And the published desired counts keep their values and publication time.
    assert state("a").desired_replicas == 4
    assert state("b").desired_replicas == 3
    assert state("a").desired_published_at == published_at
    # And the live counts show as unknown, not 0.
    assert state("a").current_replicas is None
    assert state("b").current_replicas is None
    # And nothing is proposed or applied.
    assert ScaleAction.objects.count() == 0


def test_outage_keeps_scale_up_in_flight(
    make_model: Any, make_variant: Any, kube: FakeKube, run_cycle: Any
) -> None:
    # Given A at 1 replica, saturated, mode approval: the cycle proposes 1 -> 2.
    make_variant(make_model(), "a", "L40S", max_replicas=8)
    kube.add("a", 1, [FakePod("a0")])
    busy = FakeMetrics({"a0": exposition(kv=0.95, waiting=12, running=8)})
    run_cycle(busy, NOW)
    assert state("a").desired_replicas == 2
    # When every Kubernetes read fails with HTTP 500.
    fail_reads(kube)
    cycle = run_cycle(busy, at(30))
    # Then the decision keeps the last desired 2 over the last read count 1.
    assert decision(cycle, "a").current_replicas == 1
    assert decision(cycle, "a").target_replicas == 2
    assert state("a").desired_replicas == 2
    assert cycle.outputs["variants"]["a"]["target_replicas"] == 2
    assert cycle.outputs["variants"]["a"]["current_replicas"] is None


def test_outage_accelerator_totals_keep_counts(
    serving: FakeMetrics, kube: FakeKube, run_cycle: Any
) -> None:
    # Given one good cycle, then every Kubernetes read failing.
    run_cycle(serving, NOW)
    fail_reads(kube)
    # When the next cycle stores its per-accelerator totals.
    cycle = run_cycle(serving, at(30))
    # Then H100-80GB still counts 4 replicas and A100-80GB 3.
    samples = AcceleratorSample.objects.filter(cycle=cycle)
    replicas = {sample.accelerator.name: sample.replicas for sample in samples}
    assert replicas == {"H100-80GB": 4, "A100-80GB": 3}


def test_outage_accelerator_totals_keep_ready_and_power(
    serving: FakeMetrics, kube: FakeKube, run_cycle: Any
) -> None:
    # Given one good cycle with every replica ready, then every read failing.
    good = run_cycle(serving, NOW)
    before = {
        sample.accelerator.name: sample
        for sample in AcceleratorSample.objects.filter(cycle=good)
    }
    fail_reads(kube)
    # When the next two cycles store their per-accelerator totals.
    cycles = [run_cycle(serving, at(30 * n)) for n in (1, 2)]
    # Then each keeps the last ready counts and the last power, not 0.
    for cycle in cycles:
        samples = AcceleratorSample.objects.filter(cycle=cycle)
        after = {sample.accelerator.name: sample for sample in samples}
        assert after["H100-80GB"].ready_replicas == 4
        assert after["A100-80GB"].ready_replicas == 3
        for name in ("H100-80GB", "A100-80GB"):
            assert before[name].power_w > 0
            assert after[name].power_w == before[name].power_w


def test_pods_unreadable_holds_variant(
    serving: FakeMetrics, kube: FakeKube, run_cycle: Any
) -> None:
    # Given one good cycle, then listing pods fails while the scale still reads.
    run_cycle(serving, NOW)
    fail_reads(kube, 500, ("list_namespaced_pod",))
    # When the next cycle runs.
    cycle = run_cycle(serving, at(30))
    # Then the variant holds at its last counts instead of reading 0 pods.
    assert decision(cycle, "a").current_replicas == 4
    assert decision(cycle, "a").target_replicas == 4
    assert decision(cycle, "a").ready_replicas == 4
    assert "kube_unavailable" in decision(cycle, "a").reasons
    assert state("a").desired_replicas == 4


def test_outage_before_first_read_stores_no_count(
    serving: FakeMetrics, kube: FakeKube, run_cycle: Any
) -> None:
    # Given no cycle ever read the workloads, and Kubernetes down.
    fail_reads(kube)
    # When the first cycle runs.
    cycle = run_cycle(serving, NOW)
    # Then no decision row with an invented count is stored.
    assert cycle.status == "partial"
    assert Decision.objects.filter(cycle=cycle).count() == 0
    assert cycle.outputs["variants"]["a"]["target_replicas"] is None
    # And the variant state has no count to publish, and shows as degraded.
    assert state("a").desired_replicas is None
    assert state("a").current_replicas is None
    assert state("a").degraded is True
    # And the cycle's errors name the failed reads.
    kinds = {error["kind"] for error in cycle.errors}
    assert "http_500" in kinds


def test_recovery_reads_live_counts_again(
    serving: FakeMetrics, kube: FakeKube, run_cycle: Any
) -> None:
    # Given a good cycle, an outage cycle, and Kubernetes back.
    run_cycle(serving, NOW)
    fail_reads(kube)
    run_cycle(serving, at(30))
    kube.failures.clear()
    # When the next cycle runs.
    cycle = run_cycle(serving, at(60))
    # Then it reads the live counts and drops the outage reason.
    assert state("a").current_replicas == 4
    assert "kube_unavailable" not in decision(cycle, "a").reasons
