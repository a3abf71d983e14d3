"""Cluster: routing, start-up delay, scale-down and determinism."""

from pathlib import Path

import pytest

from fleetsim.engine import (
    DELETION_COST_ANNOTATION,
    Cluster,
    load_accelerators,
    load_fleet,
)
from fleetsim.trace import load_trace, replay

DATA = Path(__file__).resolve().parents[2] / "data"


def make_cluster(**options) -> Cluster:
    fleet = load_fleet(DATA / "demo_fleet.json")
    return Cluster(fleet, load_accelerators(DATA / "accelerators.csv"), **options)


def test_same_seed_gives_same_run():
    # Given two clusters with the same seed replaying the same trace
    trace = load_trace(DATA / "traces" / "AzureLLMInferenceTrace_conv.csv")
    first = make_cluster(seed=7, arrivals=replay(trace, 6.0))
    second = make_cluster(seed=7, arrivals=replay(trace, 6.0))
    # When both run 120 s
    first.advance_to(120.0)
    second.advance_to(120.0)
    # Then pod names and every counter agree
    assert first.pods("llama-8b-h100")[0].name == second.pods("llama-8b-h100")[0].name
    assert first.status() == second.status()
    assert first.status()["completed"] > 1000


def test_different_seed_gives_other_pod_names():
    assert (
        make_cluster(seed=1).pods("llama-8b-l4")[0].name
        != make_cluster(seed=2).pods("llama-8b-l4")[0].name
    )


def test_new_replica_ready_after_startup_delay():
    # Given a 45 s start-up delay
    cluster = make_cluster(startup_delay_s=45.0)
    # When the H100 deployment scales from 1 to 2
    cluster.scale("llama-8b-h100", 2)
    new_pod = cluster.pods("llama-8b-h100")[1]
    # Then the new pod is Pending for half the delay, then Running not ready, then ready
    cluster.advance_to(22.0)
    assert new_pod.phase(cluster.now, 45.0) == "Pending"
    cluster.advance_to(23.0)
    assert new_pod.phase(cluster.now, 45.0) == "Running"
    assert not new_pod.is_ready(cluster.now)
    cluster.advance_to(44.9)
    assert cluster.deployment_counts("llama-8b-h100")["ready"] == 1
    cluster.advance_to(45.0)
    assert cluster.deployment_counts("llama-8b-h100")["ready"] == 2


def test_scale_up_beyond_gpus_stays_pending():
    # Given 2 H100 GPUs in the inventory
    cluster = make_cluster(startup_delay_s=10.0)
    # When the H100 deployment asks for 3 replicas
    cluster.scale("llama-8b-h100", 3)
    cluster.advance_to(60.0)
    # Then one pod has no node and is not ready
    pods = cluster.pods("llama-8b-h100")
    assert [p.node is None for p in pods] == [False, False, True]
    assert cluster.deployment_counts("llama-8b-h100")["ready"] == 2


def test_busy_removal_counts_lost_requests():
    # Given one L4 replica holding 30 requests
    cluster = make_cluster()
    for name in ("llama-8b-h100", "llama-8b-a100", "llama-8b-l40s"):
        cluster.scale(name, 0)
    for _ in range(30):
        cluster.submit(1000, 500)
    cluster.advance_to(5.0)
    engine = cluster.pods("llama-8b-l4")[0].engine
    in_flight = len(engine.running) + engine.n_waiting
    # When the deployment scales to 0
    cluster.scale("llama-8b-l4", 0)
    # Then every in-flight request is counted as lost
    assert in_flight == 30
    assert cluster.status()["deployments"]["llama-8b-l4"]["lost_requests"] == 30
    assert cluster.status()["lost_requests"] == 30


def test_idle_removal_loses_nothing():
    cluster = make_cluster()
    cluster.scale("llama-8b-h100", 0)
    assert cluster.status()["lost_requests"] == 0


def test_terminating_pod_frees_gpu_after_grace():
    # Given the H100 at 2 replicas, both GPUs used
    cluster = make_cluster(startup_delay_s=0.0)
    cluster.scale("llama-8b-h100", 2)
    # When it scales to 1
    cluster.scale("llama-8b-h100", 1)
    # Then one pod is terminating for 5 s, then gone
    assert cluster.deployment_counts("llama-8b-h100")["terminating"] == 1
    cluster.advance_to(5.0)
    assert len(cluster.pods("llama-8b-h100")) == 1


def test_victim_lowest_deletion_cost_first():
    # Given three ready A100 pods; the oldest has the lowest deletion cost
    cluster = make_cluster(startup_delay_s=0.0)
    cluster.scale("llama-8b-a100", 3)
    oldest, middle, newest = cluster.pods("llama-8b-a100")
    cluster.set_annotations(oldest, {DELETION_COST_ANNOTATION: "-100"})
    cluster.set_annotations(newest, {DELETION_COST_ANNOTATION: "100"})
    # When the deployment scales to 2
    cluster.scale("llama-8b-a100", 2)
    # Then the pod with cost -100 is removed
    assert oldest.deleted_at is not None
    assert middle.deleted_at is None
    assert newest.deleted_at is None


def test_victim_newest_among_equal_costs():
    cluster = make_cluster(startup_delay_s=0.0)
    cluster.scale("llama-8b-a100", 3)
    cluster.scale("llama-8b-a100", 2)
    assert [p.deleted_at is not None for p in cluster.pods("llama-8b-a100")] == [
        False,
        False,
        True,
    ]


def test_victim_not_ready_before_ready():
    # Given two ready pods, one marked for deletion, and one still starting
    cluster = make_cluster(startup_delay_s=0.0)
    cluster.scale("llama-8b-a100", 2)
    cluster.startup_delay_s = 60.0
    cluster.scale("llama-8b-a100", 3)
    first, second, starting = cluster.pods("llama-8b-a100")
    cluster.set_annotations(second, {DELETION_COST_ANNOTATION: "-1000"})
    # When the deployment scales to 2
    cluster.scale("llama-8b-a100", 2)
    # Then the starting pod goes first, as a ReplicaSet ranks it
    assert starting.deleted_at is not None
    assert second.deleted_at is None


def test_removed_annotation_restores_default_cost():
    cluster = make_cluster(startup_delay_s=0.0)
    cluster.scale("llama-8b-a100", 2)
    first, second = cluster.pods("llama-8b-a100")
    cluster.set_annotations(first, {DELETION_COST_ANNOTATION: "-5"})
    cluster.set_annotations(first, {DELETION_COST_ANNOTATION: None})
    cluster.scale("llama-8b-a100", 1)
    assert second.deleted_at is not None


def test_router_prefers_shorter_queue_then_lower_kv():
    # Given the H100 with one waiting request and the A100 with KV in use
    cluster = make_cluster()
    cluster.submit(100, 10)
    a100 = cluster.pods("llama-8b-a100")[0].engine
    a100.used_blocks = 10
    # When two more requests arrive
    cluster.submit(100, 10)
    # Then the first goes to an empty queue with zero KV (L40S, older than L4)
    assert cluster.pods("llama-8b-l40s")[0].engine.n_waiting == 1
    assert a100.n_waiting == 0
    cluster.submit(100, 10)
    assert cluster.pods("llama-8b-l4")[0].engine.n_waiting == 1


def test_request_longer_than_max_model_len_is_rejected():
    cluster = make_cluster()
    assert cluster.submit(8000, 500) is None
    assert cluster.status()["rejected_by_reason"]["too_long"] == 1


def test_request_without_ready_replica_is_rejected():
    cluster = make_cluster()
    for name in list(cluster.deployments):
        cluster.scale(name, 0)
    assert cluster.submit(100, 10) is None
    assert cluster.status()["rejected_by_reason"]["no_ready_replica"] == 1


def test_overfed_fleet_saturates_kv():
    # Given the demo fleet replaying the trace 8 times faster
    trace = load_trace(DATA / "traces" / "AzureLLMInferenceTrace_conv.csv")
    cluster = make_cluster(arrivals=replay(trace, 8.0))
    # When 120 s pass
    cluster.advance_to(120.0)
    # Then queues build up and the small pools are near full
    l4 = cluster.pods("llama-8b-l4")[0].engine
    assert l4.kv_usage > 0.85
    assert l4.n_waiting > 50


def test_negative_startup_delay_is_rejected():
    with pytest.raises(ValueError, match="startup_delay_s"):
        make_cluster(startup_delay_s=-1.0)
