"""Latency model: birth-death queue against closed forms, and SLO sizing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimizer.queueing import (
    LatencyProfile,
    queue_metrics,
    replica_capacity_rps,
    replicas_needed,
    stationary_distribution,
)

# One request at a time with a fixed 100 ms service: mu = 10 requests/s.
SINGLE = LatencyProfile(alpha=0.0, beta=0.0, gamma=100.0, delta=0.0, max_batch=1)
H100_LLAMA_8B = LatencyProfile(
    alpha=7.0, beta=0.027, gamma=20.0, delta=0.03, max_batch=64
)


def mm1k_mean_in_system(rho: float, room: int) -> float:
    return rho / (1 - rho) - (room + 1) * rho ** (room + 1) / (1 - rho ** (room + 1))


def test_single_server_matches_mm1_wait() -> None:
    # M/M/1 at rho 0.5: Wq = rho / (mu - lambda) = 0.5 / 5 s = 100 ms
    metrics = queue_metrics(SINGLE, 5.0, input_tokens=100, output_tokens=1)
    assert metrics.wait_ms == pytest.approx(100.0, rel=0.01)


def test_single_server_matches_mm1_in_system() -> None:
    metrics = queue_metrics(SINGLE, 5.0, input_tokens=100, output_tokens=1)
    assert metrics.mean_in_system == pytest.approx(1.0, rel=0.01)


def test_single_server_high_load_with_long_queue() -> None:
    # rho 0.8: L = 4, Wq = 0.8 / 2 s = 400 ms, with room for 400 requests
    metrics = queue_metrics(SINGLE, 8.0, 100, 1, capacity=400)
    assert metrics.mean_in_system == pytest.approx(4.0, rel=0.01)
    assert metrics.wait_ms == pytest.approx(400.0, rel=0.01)


def test_single_server_matches_mm1k_exactly() -> None:
    metrics = queue_metrics(SINGLE, 8.0, 100, 1)
    assert metrics.mean_in_system == pytest.approx(
        mm1k_mean_in_system(0.8, 11), rel=1e-9
    )
    assert metrics.blocking_probability == pytest.approx(
        0.2 * 0.8**11 / (1 - 0.8**12), rel=1e-9
    )


def test_queue_room_is_eleven_batches() -> None:
    metrics = queue_metrics(H100_LLAMA_8B, 1.0, 1000, 200)
    distribution = stationary_distribution(1.0, np.ones(64), 11 * 64)
    assert len(distribution) == 705
    assert metrics.throughput == pytest.approx(1.0, rel=1e-9)


def test_distribution_sums_to_one_on_long_chain() -> None:
    distribution = stationary_distribution(500.0, np.full(256, 1.0), 11 * 256)
    assert distribution.sum() == pytest.approx(1.0)
    assert np.all(np.isfinite(distribution))


def test_h100_decode_step_fit() -> None:
    assert H100_LLAMA_8B.decode_step_ms(1) == pytest.approx(7.0, abs=0.05)
    assert H100_LLAMA_8B.decode_step_ms(64) == pytest.approx(8.7, abs=0.05)


def test_idle_replica_latency_is_batch_one() -> None:
    metrics = queue_metrics(H100_LLAMA_8B, 0.0, 1000, 200)
    assert metrics.ttft_ms == pytest.approx(20.0 + 0.03 * 1000)
    assert metrics.itl_ms == pytest.approx(7.027)


def test_capacity_single_server_ttft_bound() -> None:
    # TTFT = Wq + 100 ms <= 200 ms; M/M/1 gives lambda / (mu (mu - lambda)) = 0.1 s
    # at lambda = 5, and the finite queue lets a little more through.
    capacity = replica_capacity_rps(SINGLE, 100, 1, ttft_ms=200, itl_ms=1000)
    assert capacity == pytest.approx(5.0, rel=0.01)
    assert capacity >= 5.0


def test_capacity_meets_both_targets() -> None:
    capacity = replica_capacity_rps(H100_LLAMA_8B, 1000, 200, ttft_ms=500, itl_ms=8.0)
    at_capacity = queue_metrics(H100_LLAMA_8B, capacity, 1000, 200)
    above = queue_metrics(H100_LLAMA_8B, capacity * 1.01, 1000, 200)
    assert capacity > 0
    assert at_capacity.itl_ms <= 8.0
    assert at_capacity.ttft_ms <= 500
    assert above.itl_ms > 8.0 or above.ttft_ms > 500


def test_capacity_zero_when_lone_request_misses() -> None:
    assert replica_capacity_rps(H100_LLAMA_8B, 1000, 200, ttft_ms=500, itl_ms=6.0) == 0


def test_capacity_grows_with_looser_itl() -> None:
    tight = replica_capacity_rps(H100_LLAMA_8B, 1000, 200, ttft_ms=60_000, itl_ms=7.5)
    loose = replica_capacity_rps(H100_LLAMA_8B, 1000, 200, ttft_ms=60_000, itl_ms=8.5)
    assert loose > tight


def test_replicas_needed_rounds_up() -> None:
    assert replicas_needed(20.0, 4.0) == 5
    assert replicas_needed(20.1, 4.0) == 6
    assert replicas_needed(0.0, 4.0) == 0


def test_replicas_needed_unknown_without_capacity() -> None:
    assert replicas_needed(1.0, 0.0) is None


def test_replicas_needed_rejects_nan() -> None:
    with pytest.raises(ValueError, match="arrival_rate"):
        replicas_needed(math.nan, 4.0)


def test_profile_rejects_negative_step() -> None:
    with pytest.raises(ValueError, match="beta"):
        LatencyProfile(7.0, -0.1, 0.0, 0.0, 8)
