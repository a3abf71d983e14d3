"""Single vLLM replica: iteration time, KV cache and preemption."""

from pathlib import Path

import pytest

from fleetsim.replica import (
    EngineConfig,
    Histogram,
    ReplicaEngine,
    Request,
    RequestState,
    load_accelerators,
)

ACCELERATORS = Path(__file__).resolve().parents[2] / "data" / "accelerators.csv"


@pytest.fixture(scope="module")
def profiles():
    return load_accelerators(ACCELERATORS)


def test_request_completes_with_expected_latency(profiles):
    # Given an idle H100 and one request of 1000 prompt and 100 output tokens
    engine = ReplicaEngine(profiles["H100-80GB"], EngineConfig(), 0.0)
    request = Request(0, 0.0, 1000, 100)
    engine.enqueue(request)
    # When the engine runs for 10 s
    engine.advance_to(10.0)
    # Then TTFT is one prefill iteration: 7.0 + 0.02 + 0.030 * 1000 ms
    assert request.first_token_at == pytest.approx(0.03702, rel=1e-6)
    # And 99 decode iterations follow at about 7.07 ms each
    assert request.finished_at == pytest.approx(0.03702 + 99 * 0.00708, rel=0.01)
    assert request.state is RequestState.DONE
    assert engine.counters.generation_tokens == 100
    assert engine.counters.prompt_tokens == 1000
    assert engine.used_blocks == 0


def test_chunked_prefill_splits_long_prompt(profiles):
    # Given a 5000-token prompt and 2048 batched tokens per iteration
    engine = ReplicaEngine(profiles["H100-80GB"], EngineConfig(), 0.0)
    request = Request(0, 0.0, 5000, 10)
    engine.enqueue(request)
    # When the engine runs
    engine.advance_to(5.0)
    # Then the prefill took three iterations (2048 + 2048 + 904 tokens)
    expected = sum(
        7.0 + 0.02 + 0.030 * n + 0.052 * c / 1000
        for n, c in ((2048, 0), (2048, 2048), (904, 4096))
    )
    assert request.first_token_at == pytest.approx(expected / 1000.0, rel=1e-6)


def test_admission_waits_for_free_blocks(profiles):
    # Given an L4 (26000 tokens = 1625 blocks) and 30 requests of 1000 prompt tokens
    engine = ReplicaEngine(profiles["L4"], EngineConfig(), 0.0)
    for rid in range(30):
        engine.enqueue(Request(rid, 0.0, 1000, 500))
    # When the engine runs for 15 s (all prefills done, no request finished)
    engine.advance_to(15.0)
    # Then at most 25 requests (63 blocks each) were admitted
    assert len(engine.running) <= 1625 // 63
    assert len(engine.running) >= 20
    # And the head of the queue waits because its 63 blocks do not fit
    assert engine.free_blocks < 63
    assert engine.n_waiting == 30 - len(engine.running)


def test_preemption_victim_is_newest(profiles):
    # Given 3 running requests that exhaust a tiny KV pool on their next block
    profile = profiles["H100-80GB"]
    tiny = type(profile)(**{**profile.__dict__, "kv_tokens": 16 * 6})
    engine = ReplicaEngine(tiny, EngineConfig(), 0.0)
    requests = [Request(rid, 0.0, 32, 100) for rid in range(3)]
    for request in requests:
        engine.enqueue(request)
    # When the engine runs until the first preemption
    while engine.counters.preemptions == 0:
        engine._iterate()
    # Then the newest request went back to the waiting queue
    assert requests[2].state is RequestState.WAITING
    assert requests[0].state is RequestState.DECODE
    assert requests[1].state is RequestState.DECODE


def test_request_without_first_token_times_out(profiles):
    # Given an L4 whose KV pool is taken by one long request
    engine = ReplicaEngine(profiles["L4"], EngineConfig(), 0.0)
    engine.enqueue(Request(0, 0.0, 8000, 5000))
    engine.enqueue(Request(1, 0.0, 8000, 5000))
    engine.enqueue(Request(2, 0.0, 8000, 5000))
    engine.enqueue(Request(3, 0.0, 8000, 5000))
    # When 61 s pass
    engine.advance_to(61.0)
    # Then the request that never started is counted as timed out
    assert engine.counters.timed_out == 1
    assert engine.n_waiting == 0


def test_fast_forward_matches_step_by_step(profiles):
    # Given two identical engines with the same requests
    def run(fast: bool) -> ReplicaEngine:
        engine = ReplicaEngine(profiles["A100-80GB"], EngineConfig(), 0.0)
        for rid in range(50):
            engine.enqueue(Request(rid, 0.0, 300 + 7 * rid, 50 + 13 * rid))
        if fast:
            engine.advance_to(100.0)
        else:
            while engine.running or engine.n_waiting:
                engine._expire()
                engine._iterate()
        return engine

    # When one advances many iterations at once and the other one by one
    fast, slow = run(True), run(False)
    # Then both finish at the same time with the same counters
    assert fast.counters.success == 50
    assert slow.counters.success == 50
    assert fast.counters.generation_tokens == slow.counters.generation_tokens
    assert fast.counters.e2e.sum == pytest.approx(slow.counters.e2e.sum, rel=1e-9)
    assert fast.counters.itl.count == slow.counters.itl.count
    assert list(fast.counters.itl.cumulative) == list(slow.counters.itl.cumulative)


def test_engine_config_rejects_small_token_budget():
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        EngineConfig(max_num_seqs=256, max_num_batched_tokens=128)


def test_fast_forward_matches_step_by_step_under_preemption(profiles):
    # Given two identical L4 engines fed beyond their KV pool
    def run(fast: bool) -> ReplicaEngine:
        engine = ReplicaEngine(profiles["L4"], EngineConfig(), 0.0)
        for rid in range(40):
            engine.enqueue(Request(rid, 0.0, 600 + 11 * rid, 300 + 17 * rid))
        if fast:
            engine.advance_to(400.0)
        else:
            while engine.running or engine.n_waiting:
                engine._expire()
                engine._iterate()
        return engine

    # When one advances many iterations at once and the other one by one
    fast, slow = run(True), run(False)
    # Then both preempt and finish alike
    assert fast.counters.preemptions > 0
    assert fast.counters.preemptions == slow.counters.preemptions
    assert fast.counters.success == slow.counters.success
    assert fast.counters.timed_out == slow.counters.timed_out
    assert fast.counters.iterations == slow.counters.iterations
    assert fast.counters.e2e.sum == pytest.approx(slow.counters.e2e.sum, rel=1e-9)
    assert list(fast.counters.itl.cumulative) == list(slow.counters.itl.cumulative)


def test_histogram_linear_observation_matches_single_ones():
    # Given two histograms with the same bounds
    bounds = (0.01, 0.02, 0.05, 0.1)
    linear, single = Histogram(bounds), Histogram(bounds)
    # When one observes 0.008 + 0.003 j for j < 40, three times each, at once
    linear.observe_linear(0.008, 0.003, 40, 3)
    for j in range(40):
        single.observe(0.008 + 0.003 * j, 3)
    # Then both report the same buckets, count and sum
    assert linear.buckets() == single.buckets()
    assert linear.count == single.count == 120
    assert linear.sum == pytest.approx(single.sum, rel=1e-12)


def test_histogram_counts_value_on_bound_in_that_bucket():
    histogram = Histogram((1.0, 2.0))
    histogram.observe(1.0)
    histogram.observe(2.5)
    assert histogram.buckets() == [(1.0, 1), (2.0, 1)]
    assert histogram.count == 2
