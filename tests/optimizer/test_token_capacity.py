"""Token-based capacity per replica and per variant."""

from __future__ import annotations

import math

import pytest

from optimizer.capacity import (
    ReplicaCapacity,
    ReplicaTokens,
    TokenShape,
    compute_bound_tokens,
    kv_pool_tokens,
    replica_capacity,
    required_capacity,
    spare_capacity,
    variant_capacity,
)

SHAPE = TokenShape(input_tokens=1000, output_tokens=200)


def test_pool_prefers_engine_blocks() -> None:
    assert kv_pool_tokens(28_000, 16, 451_000) == 448_000.0


def test_pool_falls_back_to_profile() -> None:
    assert kv_pool_tokens(None, 16, 451_000) == 451_000.0


def test_pool_unknown_is_none() -> None:
    assert kv_pool_tokens(None, None, None) is None
    assert kv_pool_tokens(None, None, math.nan) is None


def test_compute_bound_from_engine_settings() -> None:
    # min(8192 * 200 / 1200, 2048) = 1365.33 sequences of 1000 + 100 tokens
    bound = compute_bound_tokens(SHAPE, 2048, 8192)
    assert bound == pytest.approx(8192 * 200 / 1200 * 1100)


def test_compute_bound_capped_by_max_num_seqs() -> None:
    bound = compute_bound_tokens(SHAPE, 64, 1_000_000)
    assert bound == pytest.approx(64 * 1100)


def test_compute_bound_learned_value_wins() -> None:
    assert compute_bound_tokens(SHAPE, 64, 8192, learned_tokens=50_000) == 50_000


def test_compute_bound_unknown_settings() -> None:
    assert compute_bound_tokens(SHAPE, None, None) is None
    assert compute_bound_tokens(None, 64, 8192) is None


def test_replica_capacity_is_smaller_bound() -> None:
    replica = ReplicaTokens("a1", 100_000, 0.5, 2)
    result = replica_capacity(replica, SHAPE, 0.8, compute_bound=60_000)
    assert result.used_tokens == 50_000
    assert result.demand_tokens == 50_000 + 2 * 1200
    assert result.memory_bound == 80_000
    assert result.capacity == 60_000


@pytest.mark.parametrize("kv", [None, math.nan, math.inf, -0.1, 1.3])
def test_replica_bad_kv_is_unknown_not_zero(kv: float | None) -> None:
    result = replica_capacity(ReplicaTokens("a1", 100_000, kv, 0), SHAPE, 0.8, None)
    assert result.used_tokens is None
    assert result.demand_tokens is None


def test_replica_missing_queue_leaves_demand_unknown() -> None:
    result = replica_capacity(ReplicaTokens("a1", 100_000, 0.2, None), SHAPE, 0.8, None)
    assert result.used_tokens == 20_000
    assert result.demand_tokens is None


def capacity(pod: str, cap: float | None, demand: float | None) -> ReplicaCapacity:
    return ReplicaCapacity(pod, None, None, demand, None, None, cap)


def test_variant_uses_median_capacity() -> None:
    replicas = [
        capacity("a1", 10.0, 1.0),
        capacity("a2", 30.0, 2.0),
        capacity("a3", 20.0, 3.0),
    ]
    result = variant_capacity(replicas, ready_replicas=3, pending_replicas=1)
    assert result.per_replica == 20.0
    assert result.supply == 60.0
    assert result.supply_with_pending == 80.0
    assert result.demand == 6.0


def test_variant_demand_unknown_with_missing_replica() -> None:
    replicas = [capacity("a1", 10.0, 1.0), capacity("a2", 10.0, None)]
    result = variant_capacity(replicas, ready_replicas=2, pending_replicas=0)
    assert result.demand is None
    assert result.missing == ("a2",)


def test_variant_demand_unknown_with_unlisted_replica() -> None:
    result = variant_capacity([capacity("a1", 10.0, 1.0)], 2, 0)
    assert result.demand is None


def test_required_capacity_uses_scale_up_headroom() -> None:
    assert required_capacity(85.0, 50.0) == pytest.approx(50.0)
    assert required_capacity(10.0, 50.0) == 0.0
    assert required_capacity(None, 50.0) is None


def test_spare_capacity_uses_scale_down_headroom() -> None:
    assert spare_capacity(35.0, 100.0) == pytest.approx(50.0)
    assert spare_capacity(80.0, 100.0) == 0.0
    assert spare_capacity(35.0, None) is None


def test_token_shape_rejects_nan() -> None:
    with pytest.raises(ValueError, match="input_tokens"):
        TokenShape(math.nan, 10)
