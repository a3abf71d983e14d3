"""Global allocation: exact MILP, greedy fallback, budgets and priorities."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.allocation import (
    AllocationOptions,
    AllocationProblem,
    AllocationResult,
    AllocationVariant,
    ModelDemand,
    solve_allocation,
    solve_greedy,
)
from optimizer.bench import bench_allocation, bench_decide

PROFILE = settings(derandomize=True, max_examples=150, deadline=None, database=None)
NO_PENALTY = AllocationOptions(change_penalty_usd=0.0)


def unit(
    name: str,
    cost: float,
    capacity: float,
    *,
    model: str = "m",
    accelerator: str | None = None,
    gpus: int = 1,
    min_replicas: int = 0,
    max_replicas: int = 100,
    current: int = 0,
    watts: float = 0.0,
) -> AllocationVariant:
    return AllocationVariant(
        name=name,
        model=model,
        accelerator=accelerator or name,
        gpus_per_replica=gpus,
        usd_per_replica_hour=cost,
        capacity_per_replica=capacity,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        current_replicas=current,
        watts_per_replica=watts,
    )


def two_tier(required: float) -> AllocationProblem:
    return AllocationProblem(
        variants=(unit("A", 10, 200), unit("B", 6, 100)),
        demands=(ModelDemand("m", required),),
    )


OPTIMUM = [
    (100, {"A": 0, "B": 1}, 6.0),
    (250, {"A": 1, "B": 1}, 16.0),
    (350, {"A": 2, "B": 0}, 20.0),
]


@pytest.mark.parametrize(("required", "replicas", "cost"), OPTIMUM)
def test_milp_finds_cheapest_cover(
    required: float, replicas: dict[str, int], cost: float
) -> None:
    result = solve_allocation(two_tier(required))
    assert result.solver == "milp"
    assert result.success
    assert result.status == 0
    assert dict(result.replicas) == replicas
    assert result.usd_per_hour == cost


@pytest.mark.parametrize(("required", "replicas", "cost"), OPTIMUM)
def test_greedy_matches_milp_on_two_tiers(
    required: float, replicas: dict[str, int], cost: float
) -> None:
    result = solve_greedy(two_tier(required))
    assert result.solver == "greedy"
    assert dict(result.replicas) == replicas
    assert result.usd_per_hour == cost


def test_greedy_option_skips_milp() -> None:
    result = solve_allocation(two_tier(100), AllocationOptions(solver="greedy"))
    assert result.solver == "greedy"
    assert result.message == "greedy fill"


def test_unknown_inventory_is_no_limit() -> None:
    problem = AllocationProblem(
        variants=(unit("A", 1.86, 1, accelerator="L40S"),),
        demands=(ModelDemand("m", 6),),
        free_gpus={"L40S": None},
    )
    assert solve_allocation(problem).replicas["A"] == 6


def test_free_gpus_limit_new_replicas() -> None:
    problem = AllocationProblem(
        variants=(
            unit("A", 1.86, 1, accelerator="L40S", current=3),
            unit("B", 12.29, 1, accelerator="H100", current=2),
        ),
        demands=(ModelDemand("m", 6),),
        free_gpus={"L40S": 0, "H100": 4},
    )
    result = solve_allocation(problem)
    assert result.replicas == {"A": 3, "B": 3}


def test_shared_budget_serves_priority_first() -> None:
    problem = AllocationProblem(
        variants=(
            unit("chat", 1, 1, model="chat", accelerator="H100", gpus=2),
            unit("batch", 1, 1, model="batch", accelerator="H100", gpus=2),
        ),
        demands=(
            ModelDemand("batch", 3, priority=2),
            ModelDemand("chat", 3, priority=1),
        ),
        free_gpus={"H100": 8},
    )
    for result in (solve_allocation(problem), solve_greedy(problem)):
        assert result.replicas == {"chat": 3, "batch": 1}
        assert result.status == 1
        assert result.unserved == {"batch": pytest.approx(2.0)}


def test_max_replicas_leaves_unserved() -> None:
    problem = AllocationProblem(
        variants=(unit("A", 1, 10, max_replicas=2),), demands=(ModelDemand("m", 35),)
    )
    result = solve_allocation(problem)
    assert result.replicas == {"A": 2}
    assert result.unserved == {"m": pytest.approx(15.0)}


def test_min_replicas_kept_without_demand() -> None:
    problem = AllocationProblem(
        variants=(unit("A", 1, 10, min_replicas=2, current=5),),
        demands=(ModelDemand("m", 0),),
    )
    assert solve_allocation(problem).replicas == {"A": 2}


def test_power_weight_prefers_efficient_variant() -> None:
    variants = (unit("hot", 1.0, 10, watts=700), unit("cool", 1.05, 10, watts=300))
    problem = AllocationProblem(variants, (ModelDemand("m", 10),))
    cheap = solve_allocation(problem, AllocationOptions(usd_per_kwh=0.0))
    green = solve_allocation(problem, AllocationOptions(usd_per_kwh=0.5))
    assert cheap.replicas == {"hot": 1, "cool": 0}
    assert green.replicas == {"hot": 0, "cool": 1}


def test_change_penalty_keeps_current_on_tie() -> None:
    problem = AllocationProblem(
        variants=(unit("A", 5, 10, current=0), unit("B", 5, 10, current=1)),
        demands=(ModelDemand("m", 10),),
    )
    assert solve_allocation(problem).replicas == {"A": 0, "B": 1}


def test_duplicate_variant_rejected() -> None:
    problem = AllocationProblem((unit("A", 1, 1), unit("A", 2, 1)), ())
    with pytest.raises(ValueError, match="variants"):
        solve_allocation(problem)


@st.composite
def problems(draw: st.DrawFn) -> AllocationProblem:
    models = [f"m{i}" for i in range(draw(st.integers(1, 3)))]
    accelerators = ["L40S", "A100", "H100"]
    variants: list[AllocationVariant] = []
    for index in range(draw(st.integers(1, 5))):
        low = draw(st.integers(0, 2))
        high = draw(st.integers(low, 8))
        variants.append(
            unit(
                f"v{index}",
                draw(st.sampled_from([0.8, 1.86, 5.12, 10.6, 12.29])),
                draw(st.sampled_from([0.0, 1.0, 2.5, 4.0, 10.0])),
                model=draw(st.sampled_from(models)),
                accelerator=draw(st.sampled_from(accelerators)),
                gpus=draw(st.integers(1, 2)),
                min_replicas=low,
                max_replicas=high,
                current=draw(st.integers(low, high)),
                watts=draw(st.sampled_from([0.0, 300.0, 700.0])),
            )
        )
    demands = tuple(
        ModelDemand(m, draw(st.floats(0.0, 60.0)), priority=draw(st.integers(1, 3)))
        for m in models
    )
    free = {a: draw(st.none() | st.integers(0, 12)) for a in accelerators}
    return AllocationProblem(tuple(variants), demands, free)


def gpus_used(problem: AllocationProblem, result: AllocationResult, name: str) -> int:
    return sum(
        v.gpus_per_replica * result.replicas[v.name]
        for v in problem.variants
        if v.accelerator == name
    )


def within_budget(problem: AllocationProblem, result: AllocationResult) -> bool:
    for name, free in problem.free_gpus.items():
        if free is None:
            continue
        now = sum(
            v.gpus_per_replica * v.current_replicas
            for v in problem.variants
            if v.accelerator == name
        )
        floor = sum(
            v.gpus_per_replica * v.min_replicas
            for v in problem.variants
            if v.accelerator == name
        )
        if gpus_used(problem, result, name) > max(now + free, floor):
            return False
    return True


@PROFILE
@given(problems())
def test_budgets_and_bounds_hold(problem: AllocationProblem) -> None:
    for result in (solve_allocation(problem), solve_greedy(problem)):
        assert result.success
        assert within_budget(problem, result)
        for v in problem.variants:
            assert v.min_replicas <= result.replicas[v.name] <= v.max_replicas


@PROFILE
@given(problems())
def test_milp_never_costlier_than_greedy(problem: AllocationProblem) -> None:
    exact = solve_allocation(problem, NO_PENALTY)
    greedy = solve_greedy(problem, NO_PENALTY)
    exact_short = math.fsum(exact.unserved.values())
    greedy_short = math.fsum(greedy.unserved.values())
    if math.isclose(exact_short, greedy_short, abs_tol=1e-6):
        assert exact.objective <= greedy.objective + 1e-6
    if not exact.unserved:
        assert exact.objective <= greedy.objective + 1e-6


@PROFILE
@given(problems(), st.floats(1.0, 40.0))
def test_more_demand_never_less_capacity(
    problem: AllocationProblem, extra: float
) -> None:
    more = AllocationProblem(
        problem.variants,
        tuple(
            ModelDemand(d.model, d.required + extra, d.priority)
            for d in problem.demands
        ),
        problem.free_gpus,
    )
    before = solve_allocation(problem)
    after = solve_allocation(more)
    for demand in problem.demands:
        members = [v for v in problem.variants if v.model == demand.model]
        supply_before = sum(
            v.capacity_per_replica * before.replicas[v.name] for v in members
        )
        supply_after = sum(
            v.capacity_per_replica * after.replicas[v.name] for v in members
        )
        # The model keeps what it had, or at least what it now requires.
        assert supply_after >= min(supply_before, demand.required + extra) - 1e-6


def test_bench_tables_have_one_row_per_solver() -> None:
    allocation = bench_allocation(((2, 2),), repeats=1, inventory=True)
    decide = bench_decide(((4, 2),), repeats=1)
    assert len(allocation) == 4
    assert allocation[2].startswith("| 2 x 2 | auto (milp ")
    assert len(decide) == 3
    assert decide[2].startswith("| 4 | 2 | milp |")
