"""One allocation of replicas across all models and variants.

The objective is dollars per hour plus a weight on watts plus a small
penalty per replica changed. Every model's capacity must cover its
required capacity, GPUs per accelerator type stay within the free
inventory, and every variant stays within its bounds. When that is
infeasible, models are served in priority order and the shortfall is
reported as unserved.

`solve_allocation` runs an exact MILP (`scipy.optimize.milp`, HiGHS) under
a time limit and falls back to a greedy fill when the MILP fails.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

logger = logging.getLogger(__name__)

SolverName = Literal["milp", "greedy"]
# Capacity shortfalls below this many units count as served (float rounding).
CAPACITY_SLACK = 1e-9


@dataclass(frozen=True)
class AllocationVariant:
    """One variant, as input to the allocation.

    `capacity_per_replica` is in the unit of its model's required capacity
    (requests/s for SLO sizing). `min_replicas` and `max_replicas` are the
    bounds for this decision, which the caller may have narrowed (for
    example, no reduction of a variant with missing data).
    """

    name: str
    model: str
    accelerator: str
    gpus_per_replica: int
    usd_per_replica_hour: float
    capacity_per_replica: float
    min_replicas: int
    max_replicas: int
    current_replicas: int
    watts_per_replica: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "usd_per_replica_hour",
            "capacity_per_replica",
            "watts_per_replica",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                "min_replicas: must not be above max_replicas "
                f"({self.min_replicas} > {self.max_replicas})"
            )


@dataclass(frozen=True)
class ModelDemand:
    """Capacity one model needs, headroom included, and its service priority.

    A lower `priority` is served first when GPUs run short.
    """

    model: str
    required: float
    priority: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.required) or self.required < 0:
            raise ValueError(
                f"required: must be finite and >= 0, got {self.required!r}"
            )


@dataclass(frozen=True)
class AllocationOptions:
    """Weights of the objective, the MILP time limit and the solver to use.

    `usd_per_kwh` prices watts into the objective; `change_penalty_usd` is
    charged per replica added or removed. `mip_rel_gap` is the relative gap
    at which HiGHS stops, so its solution costs at most that fraction more
    than the optimum. `solver="greedy"` skips the MILP.
    """

    usd_per_kwh: float = 0.0
    change_penalty_usd: float = 0.01
    time_limit_s: float = 1.0
    mip_rel_gap: float = 1e-4
    solver: Literal["auto", "milp", "greedy"] = "auto"


@dataclass(frozen=True)
class AllocationProblem:
    """Variants, demands and free GPUs per accelerator (`None` when unknown)."""

    variants: tuple[AllocationVariant, ...]
    demands: tuple[ModelDemand, ...]
    free_gpus: Mapping[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class AllocationResult:
    """Replicas per variant and how they were found, like a scipy result.

    `status` is 0 when every demand is served, 1 when some demand is
    unserved and 2 when no solver produced an allocation. `unserved` maps
    model to the capacity it lacks.
    """

    replicas: Mapping[str, int]
    objective: float
    usd_per_hour: float
    unserved: Mapping[str, float]
    solver: SolverName
    success: bool
    status: int
    message: str


def _effective_cost(variant: AllocationVariant, options: AllocationOptions) -> float:
    watt_price = options.usd_per_kwh / 1000.0
    return variant.usd_per_replica_hour + watt_price * variant.watts_per_replica


def _gpu_budgets(problem: AllocationProblem) -> dict[str, float]:
    """Return GPUs each known accelerator may hold: in use now plus free."""
    budgets: dict[str, float] = {}
    for name, free in problem.free_gpus.items():
        if free is None:
            continue
        in_use = sum(
            v.gpus_per_replica * v.current_replicas
            for v in problem.variants
            if v.accelerator == name
        )
        floor = sum(
            v.gpus_per_replica * v.min_replicas
            for v in problem.variants
            if v.accelerator == name
        )
        # Lower bounds are hard, so the budget never drops below them.
        budgets[name] = float(max(in_use + free, floor))
    return budgets


def objective_value(
    problem: AllocationProblem, replicas: Mapping[str, int], options: AllocationOptions
) -> float:
    """Return cost plus power weight plus change penalty of an allocation."""
    total = 0.0
    for v in problem.variants:
        count = replicas[v.name]
        total += _effective_cost(v, options) * count
        total += options.change_penalty_usd * abs(count - v.current_replicas)
    return total


def _unserved(
    problem: AllocationProblem, replicas: Mapping[str, int]
) -> dict[str, float]:
    result: dict[str, float] = {}
    for demand in problem.demands:
        supply = math.fsum(
            v.capacity_per_replica * replicas[v.name]
            for v in problem.variants
            if v.model == demand.model
        )
        shortfall = demand.required - supply
        if shortfall > CAPACITY_SLACK * max(1.0, demand.required):
            result[demand.model] = shortfall
    return result


def _result(
    problem: AllocationProblem,
    replicas: dict[str, int],
    options: AllocationOptions,
    solver: SolverName,
    message: str,
) -> AllocationResult:
    unserved = _unserved(problem, replicas)
    usd = math.fsum(v.usd_per_replica_hour * replicas[v.name] for v in problem.variants)
    return AllocationResult(
        replicas=replicas,
        objective=objective_value(problem, replicas, options),
        usd_per_hour=usd,
        unserved=unserved,
        solver=solver,
        success=True,
        status=1 if unserved else 0,
        message=message,
    )


class _Milp:
    """The MILP over n_v, the change split d+ and d-, and optional shortfalls u_m."""

    def __init__(self, problem: AllocationProblem, options: AllocationOptions) -> None:
        self.problem = problem
        self.options = options
        self.variants = problem.variants
        self.demands = problem.demands
        self.n_var = len(self.variants)
        self.n_dem = len(self.demands)
        self.size = 3 * self.n_var + self.n_dem
        self.budgets = _gpu_budgets(problem)

    def _constraints(self) -> list[LinearConstraint]:
        nv, size = self.n_var, self.size
        rows: list[LinearConstraint] = []
        # n_v - d+_v + d-_v = current_v
        change = np.zeros((nv, size))
        change[:, :nv] = np.eye(nv)
        change[:, nv : 2 * nv] = -np.eye(nv)
        change[:, 2 * nv : 3 * nv] = np.eye(nv)
        current = np.array([v.current_replicas for v in self.variants], dtype=float)
        rows.append(LinearConstraint(change, current, current))
        if self.n_dem:
            cover = np.zeros((self.n_dem, size))
            for i, demand in enumerate(self.demands):
                for j, v in enumerate(self.variants):
                    if v.model == demand.model:
                        cover[i, j] = v.capacity_per_replica
                cover[i, 3 * nv + i] = 1.0
            required = np.array([d.required for d in self.demands])
            rows.append(LinearConstraint(cover, required, np.inf))
        if self.budgets:
            names = sorted(self.budgets)
            gpus = np.zeros((len(names), size))
            for i, name in enumerate(names):
                for j, v in enumerate(self.variants):
                    if v.accelerator == name:
                        gpus[i, j] = v.gpus_per_replica
            limits = np.array([self.budgets[n] for n in names])
            rows.append(LinearConstraint(gpus, -np.inf, limits))
        return rows

    def solve(
        self, shortfall_cost: np.ndarray | None, shortfall_cap: np.ndarray
    ) -> tuple[np.ndarray | None, int, str]:
        """Solve once; `shortfall_cost` None means costs, else minimise shortfall."""
        nv = self.n_var
        cost = np.zeros(self.size)
        if shortfall_cost is None:
            for j, v in enumerate(self.variants):
                cost[j] = _effective_cost(v, self.options)
            cost[nv : 3 * nv] = self.options.change_penalty_usd
        else:
            cost[3 * nv :] = shortfall_cost
        lower = np.zeros(self.size)
        upper = np.full(self.size, np.inf)
        lower[:nv] = [v.min_replicas for v in self.variants]
        upper[:nv] = [v.max_replicas for v in self.variants]
        upper[3 * nv :] = shortfall_cap
        integrality = np.zeros(self.size)
        integrality[:nv] = 1
        result = milp(
            cost,
            integrality=integrality,
            bounds=Bounds(lower, upper),
            constraints=self._constraints(),
            options={
                "time_limit": self.options.time_limit_s,
                "mip_rel_gap": self.options.mip_rel_gap,
            },
        )
        x = None if result.x is None else np.asarray(result.x)
        return x, int(result.status), str(result.message)

    def run(self) -> tuple[dict[str, int] | None, str]:
        """Serve all demand if possible, else serve priority levels in order."""
        zero = np.zeros(self.n_dem)
        x, status, message = self.solve(None, zero)
        if x is None and status == 2:
            x, status, message = self._by_priority()
        if x is None:
            return None, f"MILP status {status}: {message}"
        replicas = {v.name: round(x[j]) for j, v in enumerate(self.variants)}
        return replicas, message

    def _by_priority(self) -> tuple[np.ndarray | None, int, str]:
        cap = np.array([d.required for d in self.demands])
        levels = sorted({d.priority for d in self.demands})
        for level in levels:
            # Minimise this level's unserved fraction; earlier levels are fixed.
            weights = np.array(
                [
                    1.0 / max(d.required, 1e-3) if d.priority == level else 0.0
                    for d in self.demands
                ]
            )
            x, status, message = self.solve(weights, cap)
            if x is None:
                return None, status, message
            for i, d in enumerate(self.demands):
                if d.priority == level:
                    cap[i] = x[3 * self.n_var + i] + CAPACITY_SLACK * max(
                        1.0, d.required
                    )
        return self.solve(None, cap)


def _cheapest_cover(
    candidates: Sequence[AllocationVariant],
    room: Mapping[str, int],
    remaining: float,
    costs: Mapping[str, float],
) -> tuple[AllocationVariant, ...] | None:
    """Return the cheapest one or two replicas whose capacity covers `remaining`."""
    options: list[tuple[float, tuple[str, ...], tuple[AllocationVariant, ...]]] = []
    for v in candidates:
        if v.capacity_per_replica >= remaining - CAPACITY_SLACK:
            options.append((costs[v.name], (v.name,), (v,)))
    for a, b in itertools.combinations_with_replacement(candidates, 2):
        if a.name == b.name and room[a.name] < 2:
            continue
        if (
            a.capacity_per_replica + b.capacity_per_replica
            >= remaining - CAPACITY_SLACK
        ):
            options.append((costs[a.name] + costs[b.name], (a.name, b.name), (a, b)))
    if not options:
        return None
    return min(options, key=lambda item: (item[0], item[1]))[2]


class _Greedy:
    """Fill each model, in priority order, by cost per unit of capacity.

    The last one or two replicas of a model come from the cheapest cover of
    what is left. The best cost per capacity can overpay on the remainder:
    for 50 units, 100 at 6 beats 200 at 10.
    """

    def __init__(self, problem: AllocationProblem, options: AllocationOptions) -> None:
        self.problem = problem
        self.costs = {v.name: _effective_cost(v, options) for v in problem.variants}
        self.replicas = {v.name: v.min_replicas for v in problem.variants}
        self.budgets = _gpu_budgets(problem)
        self.gpus_used = {
            name: sum(
                v.gpus_per_replica * v.min_replicas
                for v in problem.variants
                if v.accelerator == name
            )
            for name in self.budgets
        }

    def _room(self, v: AllocationVariant) -> int:
        room = v.max_replicas - self.replicas[v.name]
        budget = self.budgets.get(v.accelerator)
        if budget is not None:
            free = budget - self.gpus_used[v.accelerator]
            room = min(room, int(free // v.gpus_per_replica))
        return max(0, room)

    def _add(self, v: AllocationVariant) -> None:
        self.replicas[v.name] += 1
        if v.accelerator in self.gpus_used:
            self.gpus_used[v.accelerator] += v.gpus_per_replica

    def _fill(self, demand: ModelDemand) -> None:
        variants = [v for v in self.problem.variants if v.model == demand.model]
        remaining = demand.required - math.fsum(
            v.capacity_per_replica * self.replicas[v.name] for v in variants
        )
        while remaining > CAPACITY_SLACK * max(1.0, demand.required):
            room = {v.name: self._room(v) for v in variants}
            candidates = [
                v for v in variants if room[v.name] > 0 and v.capacity_per_replica > 0
            ]
            if not candidates:
                return
            best = min(
                candidates,
                key=lambda v: (self.costs[v.name] / v.capacity_per_replica, v.name),
            )
            if remaining >= 2 * best.capacity_per_replica:
                self._add(best)
                remaining -= best.capacity_per_replica
                continue
            cover = _cheapest_cover(candidates, room, remaining, self.costs)
            for v in cover or (best,):
                if self._room(v) > 0:
                    self._add(v)
                    remaining -= v.capacity_per_replica

    def run(self) -> dict[str, int]:
        for demand in sorted(self.problem.demands, key=lambda d: (d.priority, d.model)):
            self._fill(demand)
        return self.replicas


def solve_greedy(
    problem: AllocationProblem, options: AllocationOptions | None = None
) -> AllocationResult:
    """Allocate with the greedy fill alone."""
    options = options or AllocationOptions()
    replicas = _Greedy(problem, options).run()
    return _result(problem, replicas, options, "greedy", "greedy fill")


def solve_allocation(
    problem: AllocationProblem, options: AllocationOptions | None = None
) -> AllocationResult:
    """Allocate replicas with the MILP, falling back to the greedy fill.

    With `solver="auto"` a MILP that stops at its time limit with a
    feasible solution is compared with the greedy one and the cheaper wins.
    """
    options = options or AllocationOptions()
    _check_problem(problem)
    if options.solver == "greedy" or not problem.variants:
        return solve_greedy(problem, options)
    replicas, message = _solve_joint_or_split(problem, options)
    if replicas is None:
        if options.solver == "milp":
            return AllocationResult(
                {}, math.inf, math.inf, {}, "milp", False, 2, message
            )
        logger.warning("allocation MILP failed, using the greedy fill: %s", message)
        greedy = solve_greedy(problem, options)
        return _replace_message(greedy, f"greedy fill; {message}")
    result = _result(problem, replicas, options, "milp", message)
    if options.solver == "auto" and "time limit" in message.lower():
        greedy = solve_greedy(problem, options)
        if _better(greedy, result):
            return _replace_message(greedy, f"greedy fill; MILP {message}")
    return result


# Share of the time limit that the first joint MILP gets before the
# problem is split by model (when no GPU budget can bind) or solved again.
FIRST_TRY_SHARE = 0.2


def _solve_joint_or_split(
    problem: AllocationProblem, options: AllocationOptions
) -> tuple[dict[str, int] | None, str]:
    """Try a short joint MILP, then per-model MILPs or the full joint MILP.

    Easy fleets finish in the short try. A hard fleet without a binding
    GPU budget splits into per-model MILPs, which are exact. A hard fleet
    with a binding budget gets the rest of the time limit in one joint MILP.
    """
    first = replace(options, time_limit_s=options.time_limit_s * FIRST_TRY_SHARE)
    replicas, message = _Milp(problem, first).run()
    if replicas is not None and "optimal" in message.lower():
        return replicas, message
    rest_s = options.time_limit_s * (1 - FIRST_TRY_SHARE)
    if not _budgets_can_bind(problem):
        started = time.perf_counter()
        split, split_message = _solve_per_model(problem, options, rest_s)
        if split is not None:
            return split, split_message
        rest_s -= time.perf_counter() - started
        if rest_s <= 0:
            return replicas, message
    rest = replace(options, time_limit_s=rest_s)
    again, again_message = _Milp(problem, rest).run()
    if again is None:
        return replicas, message
    return again, again_message


def _budgets_can_bind(problem: AllocationProblem) -> bool:
    """Tell whether some known GPU budget is below what the variants' max would use."""
    for name, budget in _gpu_budgets(problem).items():
        ceiling = sum(
            v.gpus_per_replica * v.max_replicas
            for v in problem.variants
            if v.accelerator == name
        )
        if ceiling > budget:
            return True
    return False


def _solve_per_model(
    problem: AllocationProblem, options: AllocationOptions, time_limit_s: float
) -> tuple[dict[str, int] | None, str]:
    """Solve each model on its own: exact when no GPU budget can bind.

    Without a binding GPU budget the objective and constraints separate by
    model, and many small MILPs close their gaps far sooner than one joint
    MILP. The models share `time_limit_s` equally, and a part stopped by its
    share keeps its best solution. Returns `None` when a part fails or a
    budget is exceeded.
    """
    models = sorted({v.model for v in problem.variants})
    if len(models) < 2:
        return None, ""
    share = replace(options, time_limit_s=max(0.005, time_limit_s / len(models)))
    deadline = time.perf_counter() + time_limit_s
    replicas: dict[str, int] = {}
    stopped = 0
    for model in models:
        if time.perf_counter() > deadline:
            # Each small MILP has a fixed set-up cost, so many models can
            # outlast the time limit. The caller then keeps its earlier solution.
            return None, ""
        part = AllocationProblem(
            tuple(v for v in problem.variants if v.model == model),
            tuple(d for d in problem.demands if d.model == model),
        )
        answer, message = _Milp(part, share).run()
        if answer is None:
            return None, ""
        stopped += "optimal" not in message.lower()
        replicas.update(answer)
    for name, budget in _gpu_budgets(problem).items():
        used = sum(
            v.gpus_per_replica * replicas[v.name]
            for v in problem.variants
            if v.accelerator == name
        )
        if used > budget:
            return None, ""
    if stopped:
        return replicas, (
            f"Time limit reached in {stopped} of {len(models)} per-model MILPs; "
            "GPU budgets do not bind."
        )
    return replicas, "Optimal per model; GPU budgets do not bind."


def _better(candidate: AllocationResult, incumbent: AllocationResult) -> bool:
    candidate_short = math.fsum(candidate.unserved.values())
    incumbent_short = math.fsum(incumbent.unserved.values())
    if not math.isclose(candidate_short, incumbent_short, abs_tol=1e-9):
        return candidate_short < incumbent_short
    return candidate.objective < incumbent.objective - 1e-9


def _replace_message(result: AllocationResult, message: str) -> AllocationResult:
    return AllocationResult(
        result.replicas,
        result.objective,
        result.usd_per_hour,
        result.unserved,
        result.solver,
        result.success,
        result.status,
        message,
    )


def _check_problem(problem: AllocationProblem) -> None:
    names = [v.name for v in problem.variants]
    if len(set(names)) != len(names):
        raise ValueError("variants: names must be unique")
    models = [d.model for d in problem.demands]
    if len(set(models)) != len(models):
        raise ValueError("demands: one demand per model")
