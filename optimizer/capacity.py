"""Token-based capacity of replicas and variants.

A replica's KV pool has room for `T` tokens. Its load is the tokens in use plus the
tokens its waiting requests will need. Its capacity is the smaller of a
memory bound (the KV threshold times `T`) and a compute bound (from the
engine's batch limits, or learned from the tokens in use when the queue
first reached its threshold). A value that is missing, not finite or out of
range stays `None` all the way through: it is never read as 0.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Fraction of supply that demand may fill before more capacity is required,
# and the fraction below which supply counts as spare.
SCALE_UP_HEADROOM = 0.85
SCALE_DOWN_HEADROOM = 0.70


def finite_or_none(value: float | None) -> float | None:
    """Return the value when it is a finite number, else `None`."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class TokenShape:
    """Average prompt (`input_tokens`) and generation (`output_tokens`) lengths."""

    input_tokens: float
    output_tokens: float

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}: must be finite and > 0, got {value!r}")

    @property
    def per_request(self) -> float:
        """Tokens in one request's KV cache at its end: prompt plus generation."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ReplicaTokens:
    """One replica's KV pool size in tokens and its current samples."""

    pod: str
    kv_tokens: float | None
    kv_cache_usage: float | None
    num_requests_waiting: float | None


@dataclass(frozen=True)
class ReplicaCapacity:
    """Capacity and load of one replica in tokens, `None` where unknown.

    `memory_bound` is k1, `compute_bound` k2 and `capacity` min(k1, k2).
    """

    pod: str
    kv_tokens: float | None
    used_tokens: float | None
    demand_tokens: float | None
    memory_bound: float | None
    compute_bound: float | None
    capacity: float | None


def kv_pool_tokens(
    num_gpu_blocks: int | None, block_size: int | None, profile_kv_tokens: float | None
) -> float | None:
    """Return T: the engine's blocks times block size, else the profile's pool."""
    if num_gpu_blocks and block_size and num_gpu_blocks > 0 and block_size > 0:
        return float(num_gpu_blocks * block_size)
    pool = finite_or_none(profile_kv_tokens)
    if pool is None or pool <= 0:
        return None
    return pool


def compute_bound_tokens(
    shape: TokenShape | None,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    learned_tokens: float | None = None,
) -> float | None:
    """Return k2, the tokens in use at which the engine's compute saturates.

    A learned value (tokens in use when the queue first reached its
    threshold) wins. Otherwise the concurrent sequences are the smaller of
    `max_num_batched_tokens * O / (I + O)` and `max_num_seqs`, each holding
    `I + O / 2` tokens on average.
    """
    learned = finite_or_none(learned_tokens)
    if learned is not None and learned > 0:
        return learned
    if shape is None:
        return None
    limits: list[float] = []
    if max_num_batched_tokens is not None and max_num_batched_tokens > 0:
        share = shape.output_tokens / shape.per_request
        limits.append(max_num_batched_tokens * share)
    if max_num_seqs is not None and max_num_seqs > 0:
        limits.append(float(max_num_seqs))
    if not limits:
        return None
    return min(limits) * (shape.input_tokens + shape.output_tokens / 2.0)


def replica_capacity(
    replica: ReplicaTokens,
    shape: TokenShape | None,
    kv_cache_threshold: float,
    compute_bound: float | None,
) -> ReplicaCapacity:
    """Compute U, D, k1 and C = min(k1, k2) of one replica."""
    pool = finite_or_none(replica.kv_tokens)
    kv = finite_or_none(replica.kv_cache_usage)
    waiting = finite_or_none(replica.num_requests_waiting)
    if kv is not None and not 0.0 <= kv <= 1.0:
        kv = None
    if waiting is not None and waiting < 0:
        waiting = None
    used = kv * pool if kv is not None and pool is not None else None
    demand: float | None = None
    if used is not None and waiting is not None and shape is not None:
        demand = used + waiting * shape.per_request
    memory = pool * kv_cache_threshold if pool is not None else None
    bounds = [b for b in (memory, compute_bound) if b is not None]
    return ReplicaCapacity(
        pod=replica.pod,
        kv_tokens=pool,
        used_tokens=used,
        demand_tokens=demand,
        memory_bound=memory,
        compute_bound=compute_bound,
        capacity=min(bounds) if bounds else None,
    )


@dataclass(frozen=True)
class VariantCapacity:
    """Token capacity of one variant, with the pods whose data was unusable.

    `per_replica` is the median over replicas with a known capacity.
    `supply` counts ready replicas and `supply_with_pending` adds the
    pending ones. `demand` is `None` unless every ready replica's demand is
    known, so that a gap is never read as an idle replica.
    """

    per_replica: float | None
    supply: float | None
    supply_with_pending: float | None
    demand: float | None
    missing: tuple[str, ...]


def variant_capacity(
    replicas: Sequence[ReplicaCapacity], ready_replicas: int, pending_replicas: int
) -> VariantCapacity:
    """Aggregate replica capacities into per-replica median, supply and demand."""
    capacities = sorted(r.capacity for r in replicas if r.capacity is not None)
    missing = tuple(r.pod for r in replicas if r.demand_tokens is None)
    per_replica = statistics.median(capacities) if capacities else None
    supply = per_replica * ready_replicas if per_replica is not None else None
    with_pending = (
        per_replica * (ready_replicas + pending_replicas)
        if per_replica is not None
        else None
    )
    demand: float | None = None
    if not missing and len(replicas) >= ready_replicas:
        demand = math.fsum(r.demand_tokens or 0.0 for r in replicas)
    return VariantCapacity(per_replica, supply, with_pending, demand, missing)


def required_capacity(
    demand: float | None,
    supply_with_pending: float | None,
    headroom: float = SCALE_UP_HEADROOM,
) -> float | None:
    """Return `max(0, demand / headroom - supply)`, or `None` when unknown."""
    if demand is None or supply_with_pending is None:
        return None
    return max(0.0, demand / headroom - supply_with_pending)


def spare_capacity(
    demand: float | None,
    supply: float | None,
    headroom: float = SCALE_DOWN_HEADROOM,
) -> float | None:
    """Return `max(0, supply - demand / headroom)`, or `None` when unknown."""
    if demand is None or supply is None:
        return None
    return max(0.0, supply - demand / headroom)
