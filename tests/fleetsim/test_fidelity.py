"""Fleet model against published measurements, queueing theory and a reference.

The reference for routing is the plain method: every pod brought to every
arrival time before the request is routed.
"""

from pathlib import Path

import numpy as np
import pytest

from fleetsim.engine import Cluster, load_fleet
from fleetsim.replica import (
    EngineConfig,
    ReplicaEngine,
    Request,
    RequestState,
    load_accelerators,
)
from fleetsim.trace import load_trace, replay

DATA = Path(__file__).resolve().parents[2] / "data"
ACCELERATORS = DATA / "accelerators.csv"


@pytest.fixture(scope="module")
def profiles():
    return load_accelerators(ACCELERATORS)


def mean_decode_step_ms(engine: ReplicaEngine, batch: int, prompt: int) -> float:
    """Measure the mean inter-token latency of 16 decode iterations at a batch."""
    for rid in range(batch):
        engine.enqueue(Request(rid, 0.0, prompt, 1000))
    while engine.n_decode < batch:
        engine.advance_to(engine.now + 1e-6)
    itl = engine.counters.itl
    count, total = itl.count, itl.sum
    iterations = engine.counters.iterations
    while engine.counters.iterations < iterations + 16:
        engine.advance_to(engine.now + 1e-6)
    assert engine.n_decode == batch
    itl = engine.counters.itl
    return (itl.sum - total) / (itl.count - count) * 1000.0


def test_h100_decode_step_at_batch_1(profiles):
    # Given one H100 replica decoding one request with about 200 tokens of context
    engine = ReplicaEngine(profiles["H100-80GB"], EngineConfig(), 0.0)
    # When 16 decode iterations run
    step_ms = mean_decode_step_ms(engine, batch=1, prompt=200)
    # Then each takes about 7.0 ms, the published vLLM figure in data/README.md
    assert step_ms == pytest.approx(7.0, rel=0.10)


def test_h100_decode_step_at_batch_64(profiles):
    # Given 64 requests with about 200 tokens of context each
    engine = ReplicaEngine(profiles["H100-80GB"], EngineConfig(), 0.0)
    # When 16 decode iterations run
    step_ms = mean_decode_step_ms(engine, batch=64, prompt=200)
    # Then each takes about 8.7 ms
    assert step_ms == pytest.approx(8.7, rel=0.10)


def test_h100_kv_pool_for_llama_8b(profiles):
    # Given an H100 replica with vLLM's default 16-token blocks
    engine = ReplicaEngine(profiles["H100-80GB"], EngineConfig(), 0.0)
    # Then its pool is close to the 467k tokens of the BLIS simulator's H100 fit
    pool_tokens = engine.total_blocks * engine.config.block_size
    assert pool_tokens == pytest.approx(467_000, rel=0.05)


def service_time_s(profiles, prompt: int, output: int) -> float:
    """Measure one request's time in an idle H100 replica at batch 1."""
    engine = ReplicaEngine(profiles["H100-80GB"], EngineConfig(max_num_seqs=1), 0.0)
    request = Request(0, 0.0, prompt, output)
    engine.enqueue(request)
    engine.advance_to(60.0)
    assert request.state is RequestState.DONE
    return request.finished_at


def test_batch_1_replica_matches_md1_waiting_time(profiles):
    # Given a replica that serves one request at a time, all of the same size,
    # so its service time S is constant
    prompt, output = 300, 40
    service_s = service_time_s(profiles, prompt, output)
    # And 40,000 Poisson arrivals at utilisation rho = 0.5
    rho = 0.5
    rng = np.random.default_rng(2026)
    arrivals = np.cumsum(rng.exponential(service_s / rho, size=40_000))
    engine = ReplicaEngine(profiles["H100-80GB"], EngineConfig(max_num_seqs=1), 0.0)
    requests = []
    # When each request is enqueued at its arrival time
    for rid, arrival in enumerate(arrivals.tolist()):
        engine.advance_to(arrival)
        request = Request(rid, arrival, prompt, output)
        engine.enqueue(request)
        requests.append(request)
    engine.advance_to(float(arrivals[-1]) + 3600.0)
    # Then every request is served
    assert all(r.state is RequestState.DONE for r in requests)
    # And the mean wait before service matches M/D/1: rho S / (2 (1 - rho))
    waits = [r.finished_at - r.arrival - service_s for r in requests]
    expected = rho * service_s / (2.0 * (1.0 - rho))
    assert float(np.mean(waits)) == pytest.approx(expected, rel=0.05)
    # And no request waited less than nothing
    assert min(waits) > -1e-9


def test_overfed_replica_preempts_with_kv_near_full(profiles):
    # Given an L4 fed 40 requests whose outputs outgrow its KV pool
    engine = ReplicaEngine(profiles["L4"], EngineConfig(), 0.0)
    for rid in range(40):
        engine.enqueue(Request(rid, 0.0, 600, 2000))
    # When the engine runs for 50 s
    engine.advance_to(50.0)
    # Then decodes ran out of blocks and preempted requests
    assert engine.counters.preemptions > 0
    # And the KV usage it reports is close to 1 but not above
    assert engine.kv_usage > 0.95
    assert engine.kv_usage <= 1.0
    # And the used blocks are exactly those of the running requests
    assert engine.used_blocks == sum(
        engine.blocks_for(
            r.base + engine.step if r.state is RequestState.DECODE else r.target
        )
        for r in engine.running.values()
    )


SCALED_DEMO = {
    "llama-8b-h100": 2,
    "llama-8b-a100": 4,
    "llama-8b-l40s": 4,
    "llama-8b-l4": 8,
}


def scaled_demo_cluster(profiles, **options) -> Cluster:
    """Build the demo fleet with 18 ready replicas."""
    cluster = Cluster(
        load_fleet(DATA / "demo_fleet.json"),
        profiles,
        startup_delay_s=0.0,
        seed=7,
        **options,
    )
    for name, replicas in SCALED_DEMO.items():
        cluster.scale(name, replicas)
    return cluster


def test_lazy_routing_matches_advancing_every_pod(profiles):
    # Given 120 s of the Azure trace at 6x (33 requests/s) for 18 replicas
    trace = load_trace(DATA / "traces" / "AzureLLMInferenceTrace_conv.csv")
    end_s = 120.0
    # When one cluster takes the arrivals as an iterator and advances pods lazily
    lazy = scaled_demo_cluster(profiles, arrivals=replay(trace, 6.0))
    lazy.advance_to(end_s)

    # And another brings every pod to every arrival time before routing it
    eager = scaled_demo_cluster(profiles)
    for arrival, prompt, output in replay(trace, 6.0, loop=False):
        if arrival > end_s:
            break
        eager.advance_to(arrival)
        eager.submit(prompt, output)
    eager.advance_to(end_s)

    # Then every request went to the same pod, with the same outcome
    assert lazy.status()["completed"] > 2000
    assert lazy.status() == eager.status()
    for name in SCALED_DEMO:
        for lazy_pod, eager_pod in zip(lazy.pods(name), eager.pods(name), strict=True):
            lazy_counters = lazy_pod.engine.counters
            eager_counters = eager_pod.engine.counters
            assert lazy_counters.success == eager_counters.success
            assert lazy_counters.iterations == eager_counters.iterations
            assert lazy_counters.generation_tokens == eager_counters.generation_tokens
            assert lazy_counters.ttft.sum == pytest.approx(
                eager_counters.ttft.sum, rel=1e-9
            )
            assert lazy_counters.e2e.sum == pytest.approx(
                eager_counters.e2e.sum, rel=1e-9
            )
