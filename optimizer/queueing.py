"""Latency model of one vLLM replica and SLO sizing.

With batch size n (times in ms): decode step `T_d(n) = alpha + beta * n`,
prefill `T_p(n) = gamma + delta * I * n`, service time
`S(n) = T_p(n) + (O - 1) * T_d(n)` and service rate `mu(n) = n / S(n)`,
with n up to the maximum batch N. The replica is a birth-death queue with
room for `K = 11 N` requests. Its stationary distribution gives throughput,
mean wait and concurrency. TTFT is the wait plus the prefill time at the
batch an arriving request joins, and ITL is the decode step at that batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Queue room per batch slot: the queue has room for K = QUEUE_ROOM_PER_SLOT * N.
QUEUE_ROOM_PER_SLOT = 11
# Relative width at which the binary search for capacity stops.
SEARCH_TOLERANCE = 1e-4


@dataclass(frozen=True)
class LatencyProfile:
    """Fitted step times of one variant in ms, and its maximum batch N."""

    alpha: float
    beta: float
    gamma: float
    delta: float
    max_batch: int

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "delta"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch: must be >= 1, got {self.max_batch}")

    def decode_step_ms(self, batch: float) -> float:
        """Return `T_d(n) = alpha + beta * n`."""
        return self.alpha + self.beta * batch

    def prefill_ms(self, batch: float, input_tokens: float) -> float:
        """Return `T_p(n) = gamma + delta * I * n`."""
        return self.gamma + self.delta * input_tokens * batch

    def service_ms(
        self, batch: float, input_tokens: float, output_tokens: float
    ) -> float:
        """Return `S(n) = T_p(n) + (O - 1) * T_d(n)`, the time one request is served."""
        decode = max(0.0, output_tokens - 1.0) * self.decode_step_ms(batch)
        return self.prefill_ms(batch, input_tokens) + decode


@dataclass(frozen=True)
class QueueMetrics:
    """Stationary metrics of one replica at one arrival rate (requests/s).

    `wait_ms` is the mean time in the queue before service starts, and
    `batch` the mean batch an admitted request joins.
    """

    arrival_rate: float
    throughput: float
    blocking_probability: float
    mean_in_system: float
    concurrency: float
    wait_ms: float
    batch: float
    ttft_ms: float
    itl_ms: float


def service_rates_per_s(
    profile: LatencyProfile, input_tokens: float, output_tokens: float
) -> np.ndarray:
    """Return mu(n) in requests/s for n = 1..N."""
    batch = np.arange(1, profile.max_batch + 1, dtype=float)
    decode = max(0.0, output_tokens - 1.0) * (profile.alpha + profile.beta * batch)
    service = profile.gamma + profile.delta * input_tokens * batch + decode
    if np.any(service <= 0):
        raise ValueError("profile: service time must be > 0 at every batch size")
    rates: np.ndarray = 1000.0 * batch / service
    return rates


def stationary_distribution(
    arrival_rate: float, service_rates: np.ndarray, capacity: int
) -> np.ndarray:
    """Solve the birth-death chain with states 0..capacity.

    In state k the birth rate is `arrival_rate` (for k < capacity) and the
    death rate is `service_rates[min(k, N) - 1]`. Logarithms keep the
    products finite for long chains.
    """
    n_max = len(service_rates)
    states = np.arange(1, capacity + 1)
    deaths = service_rates[np.minimum(states, n_max) - 1]
    if arrival_rate <= 0:
        result = np.zeros(capacity + 1)
        result[0] = 1.0
        return result
    log_terms = np.concatenate(([0.0], np.cumsum(np.log(arrival_rate / deaths))))
    log_terms -= log_terms.max()
    weights = np.exp(log_terms)
    distribution: np.ndarray = weights / weights.sum()
    return distribution


def queue_metrics(
    profile: LatencyProfile,
    arrival_rate: float,
    input_tokens: float,
    output_tokens: float,
    capacity: int | None = None,
) -> QueueMetrics:
    """Compute throughput, wait, concurrency, TTFT and ITL at one arrival rate."""
    if not math.isfinite(arrival_rate) or arrival_rate < 0:
        raise ValueError(f"arrival_rate: must be finite and >= 0, got {arrival_rate!r}")
    n_max = profile.max_batch
    room = capacity if capacity is not None else QUEUE_ROOM_PER_SLOT * n_max
    rates = service_rates_per_s(profile, input_tokens, output_tokens)
    p = stationary_distribution(arrival_rate, rates, room)

    k = np.arange(room + 1)
    in_service = np.minimum(k, n_max)
    blocking = float(p[-1])
    throughput = arrival_rate * (1.0 - blocking)
    queued = float(np.dot(np.maximum(k - n_max, 0), p))
    wait_ms = 1000.0 * queued / throughput if throughput > 0 else 0.0

    # By PASTA, an arrival finds state k with the time-average probability.
    # Admitted in state k < capacity, it joins a batch of min(k + 1, N).
    admitted = p[:-1]
    admitted_mass = float(admitted.sum())
    join_batch = np.minimum(k[:-1] + 1, n_max)
    batch = (
        float(np.dot(join_batch, admitted) / admitted_mass) if admitted_mass else 1.0
    )
    return QueueMetrics(
        arrival_rate=arrival_rate,
        throughput=throughput,
        blocking_probability=blocking,
        mean_in_system=float(np.dot(k, p)),
        concurrency=float(np.dot(in_service, p)),
        wait_ms=wait_ms,
        batch=batch,
        ttft_ms=wait_ms + profile.prefill_ms(batch, input_tokens),
        itl_ms=profile.decode_step_ms(batch),
    )


def _meets(metrics: QueueMetrics, ttft_ms: float, itl_ms: float) -> bool:
    return metrics.ttft_ms <= ttft_ms and metrics.itl_ms <= itl_ms


@lru_cache(maxsize=4096)
def replica_capacity_rps(
    profile: LatencyProfile,
    input_tokens: float,
    output_tokens: float,
    ttft_ms: float,
    itl_ms: float,
) -> float:
    """Find the largest arrival rate (requests/s) at which a replica meets both targets.

    Returns 0.0 when even a lone request misses a target. The search runs
    between 0 and the service rate at the full batch, to a relative width
    of `SEARCH_TOLERANCE`, and returns the lower end.
    """
    if not _meets(
        queue_metrics(profile, 0.0, input_tokens, output_tokens), ttft_ms, itl_ms
    ):
        return 0.0
    rates = service_rates_per_s(profile, input_tokens, output_tokens)
    low, high = 0.0, float(rates.max())
    if _meets(
        queue_metrics(profile, high, input_tokens, output_tokens), ttft_ms, itl_ms
    ):
        return high
    while high - low > SEARCH_TOLERANCE * high:
        middle = (low + high) / 2.0
        metrics = queue_metrics(profile, middle, input_tokens, output_tokens)
        if _meets(metrics, ttft_ms, itl_ms):
            low = middle
        else:
            high = middle
    return low


def replicas_needed(arrival_rate: float, capacity_rps: float) -> int | None:
    """Return `ceil(arrival / capacity)`, or `None` when a replica serves nothing."""
    if not math.isfinite(arrival_rate) or arrival_rate < 0:
        raise ValueError(f"arrival_rate: must be finite and >= 0, got {arrival_rate!r}")
    if arrival_rate == 0:
        return 0
    if capacity_rps <= 0:
        return None
    # Round before the ceiling so 20.000000001 / 4.0 does not become 6.
    return math.ceil(round(arrival_rate / capacity_rps, 9))
