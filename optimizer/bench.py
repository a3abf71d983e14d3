"""Time the global allocation and the whole `wva` decision on synthetic fleets.

Run with `python -m optimizer.bench`. It prints one table for the
allocation alone (MILP and greedy) and one for `decide_wva` on full
states, with median and p95 time, the MILP-versus-greedy cost gap and the
process's peak resident memory. Fleets are generated from a fixed seed
over 8 accelerator types.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from optimizer.allocation import (
    AllocationOptions,
    AllocationProblem,
    AllocationResult,
    AllocationVariant,
    ModelDemand,
    solve_allocation,
    solve_greedy,
)
from optimizer.policy_wva import decide_wva
from optimizer.state import parse_state

# name, USD per GPU-hour, decode step base (ms), per-sequence step (ms)
ACCELERATORS = (
    ("L4", 0.80, 67.0, 0.30),
    ("A10G", 1.01, 35.0, 0.25),
    ("L40S", 1.86, 23.0, 0.10),
    ("A100-40GB", 4.10, 11.5, 0.06),
    ("A100-80GB", 5.12, 11.5, 0.06),
    ("H100-80GB", 12.29, 7.0, 0.027),
    ("H200", 10.60, 5.0, 0.02),
    ("MI300X", 6.00, 6.0, 0.02),
)


def allocation_problem(models: int, per_model: int, seed: int) -> AllocationProblem:
    """Build a fleet of `models` models with `per_model` variants each."""
    rng = random.Random(seed)
    variants: list[AllocationVariant] = []
    demands: list[ModelDemand] = []
    for m in range(models):
        chosen = rng.sample(ACCELERATORS, k=min(per_model, len(ACCELERATORS)))
        total = 0.0
        for v, (name, price, base, _) in enumerate(chosen):
            gpus = rng.choice((1, 1, 2, 4))
            capacity = gpus * 60.0 / base * rng.uniform(0.8, 1.2)
            total += capacity
            current = rng.randint(0, 4)
            variants.append(
                AllocationVariant(
                    name=f"m{m}-v{v}",
                    model=f"m{m}",
                    accelerator=name,
                    gpus_per_replica=gpus,
                    usd_per_replica_hour=price * gpus,
                    capacity_per_replica=capacity,
                    min_replicas=0,
                    max_replicas=rng.randint(4, 16),
                    current_replicas=current,
                    watts_per_replica=300.0 * gpus,
                )
            )
        demands.append(
            ModelDemand(f"m{m}", total * rng.uniform(0.5, 3.0), rng.randint(1, 3))
        )
    free = {name: rng.randint(4 * models, 12 * models) for name, *_ in ACCELERATORS}
    return AllocationProblem(tuple(variants), tuple(demands), free)


def state_document(variants: int, models: int, seed: int) -> dict[str, Any]:
    """Build a `wva` state with `variants` variants spread over `models` models."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for v in range(variants):
        name, _, base, per_seq = ACCELERATORS[v % len(ACCELERATORS)]
        current = rng.randint(1, 4)
        rows.append(
            {
                "name": f"v{v}",
                "model": f"m{v % models}",
                "accelerator": name,
                "service_class": "interactive",
                "min_replicas": 1,
                "max_replicas": 16,
                "current_replicas": current,
                "profile": {
                    "alpha": base,
                    "beta": per_seq,
                    "gamma": 20.0,
                    "delta": 0.03 + 0.01 * (v % 3),
                    "max_num_seqs": 128,
                },
                "replicas": [
                    {
                        "pod": f"v{v}-r{i}",
                        "kv_cache_usage": round(rng.uniform(0.1, 0.95), 3),
                        "num_requests_waiting": rng.randint(0, 8),
                        "num_requests_running": rng.randint(0, 100),
                    }
                    for i in range(current)
                ],
            }
        )
    return {
        "policy": "wva",
        "accelerators": [
            {"name": name, "usd_per_gpu_hour": price, "gpus_available": 4 * variants}
            for name, price, *_ in ACCELERATORS
        ],
        "service_classes": [
            {"name": "interactive", "priority": 1, "ttft_ms": 1500, "itl_ms": 60}
        ],
        "variants": rows,
        "demand": {
            f"m{m}": {
                "arrival_rate": rng.uniform(5.0, 40.0),
                "avg_input_tokens": 800,
                "avg_output_tokens": 200,
            }
            for m in range(models)
        },
    }


def _p95(times: Sequence[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _peak_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_allocation(
    sizes: Sequence[tuple[int, int]], repeats: int, inventory: bool
) -> list[str]:
    """Time MILP and greedy on fleets of (models, variants per model).

    With `inventory` False the GPU inventory is unknown, so no budget binds.
    """
    lines = [
        "| models x variants | solver | median ms | p95 ms | cost gap % | peak MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    options = AllocationOptions(usd_per_kwh=0.1, time_limit_s=1.0)
    for models, per_model in sizes:
        problems = [
            allocation_problem(models, per_model, seed) for seed in range(repeats)
        ]
        if not inventory:
            problems = [AllocationProblem(p.variants, p.demands, {}) for p in problems]
        results: dict[str, list[AllocationResult]] = {"milp": [], "greedy": []}
        times: dict[str, list[float]] = {"milp": [], "greedy": []}
        for problem in problems:
            for solver, function in (
                ("milp", solve_allocation),
                ("greedy", solve_greedy),
            ):
                start = time.perf_counter()
                results[solver].append(function(problem, options))
                times[solver].append(time.perf_counter() - start)
        gaps = [
            100.0 * (g.objective - m.objective) / m.objective
            for m, g in zip(results["milp"], results["greedy"], strict=True)
            if m.objective > 0 and not m.unserved and not g.unserved
        ]
        gap = f"{statistics.median(gaps):.2f}" if gaps else "n/a"
        answered = sum(r.solver == "milp" for r in results["milp"])
        labels = {
            "milp": f"auto (milp {answered} of {len(problems)})",
            "greedy": "greedy",
        }
        for solver in ("milp", "greedy"):
            lines.append(
                f"| {models} x {per_model} | {labels[solver]} "
                f"| {1000 * statistics.median(times[solver]):.1f} "
                f"| {1000 * _p95(times[solver]):.1f} "
                f"| {gap if solver == 'greedy' else '0'} | {_peak_mib():.0f} |"
            )
    return lines


def bench_decide(sizes: Sequence[tuple[int, int]], repeats: int) -> list[str]:
    """Time `decide_wva` on states of (variants, models), parsing excluded."""
    lines = [
        "| variants | models | solver | median ms | p95 ms | peak MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for variants, models in sizes:
        states = [
            parse_state(state_document(variants, models, seed))
            for seed in range(repeats)
        ]
        solver = decide_wva(states[0]).solver
        times: list[float] = []
        for state in states:
            start = time.perf_counter()
            decide_wva(state)
            times.append(time.perf_counter() - start)
        lines.append(
            f"| {variants} | {models} | {solver} "
            f"| {1000 * statistics.median(times):.1f} | {1000 * _p95(times):.1f} "
            f"| {_peak_mib():.0f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print both tables as Markdown."""
    parser = argparse.ArgumentParser(prog="python -m optimizer.bench")
    parser.add_argument(
        "--repeats", type=int, default=20, help="fleets per size (default 20)"
    )
    args = parser.parse_args(argv)
    sizes = ((10, 4), (50, 8), (125, 8))
    print("Allocation, GPU inventory unknown (usd_per_kwh 0.1, time limit 1 s):\n")
    for line in bench_allocation(sizes, args.repeats, inventory=False):
        print(line)
    print("\nAllocation, GPU budgets known and binding:\n")
    for line in bench_allocation(sizes, args.repeats, inventory=True):
        print(line)
    print("\nWhole wva decision (SLO sizing, safety rules, allocation):\n")
    for line in bench_decide(((10, 5), (100, 50), (1000, 50)), args.repeats):
        print(line)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
