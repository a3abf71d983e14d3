"""Time the fleet simulator on one hour of Azure conversation traffic.

Usage: .venv/bin/python benchmarks/fleetsim_bench.py [--seconds S]
    [--compression X] [--fleet H100,A100,L40S,L4] [--seed N] [--profile FILE]

Replays `data/traces/AzureLLMInferenceTrace_conv.csv` (5.53 requests/s)
compressed by X. The default of 8 gives about 44 requests/s, so one
simulated hour is about 160,000 requests. They go to a fixed fleet of
Llama-3.1-8B replicas on mixed accelerators: by default 8 H100, 16
A100-80GB, 16 L40S and 24 L4, 64 replicas in all.
Runs in this process on one core and prints one JSON object: wall and CPU
seconds of the simulation (trace loading excluded), requests, simulated
engine iterations, peak resident memory and the run's counters. Two runs
with the same arguments print the same counters.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleetsim.engine import (  # noqa: E402
    Cluster,
    EngineConfig,
    FleetSpec,
    VariantSpec,
    load_accelerators,
)
from fleetsim.trace import load_trace, replay  # noqa: E402

DATA = ROOT / "data"
ACCELERATORS = ("H100-80GB", "A100-80GB", "L40S", "L4")


def parse_fleet(text: str) -> dict[str, int]:
    """Parse replica counts per accelerator, in the order of ACCELERATORS."""
    parts = text.split(",")
    if len(parts) != len(ACCELERATORS):
        raise argparse.ArgumentTypeError(
            f"--fleet needs {len(ACCELERATORS)} counts "
            f"({','.join(ACCELERATORS)}), got {text!r}"
        )
    try:
        counts = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--fleet counts must be integers, got {text!r}"
        ) from None
    if min(counts) < 0 or sum(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"--fleet counts must be >= 0 with at least one replica, got {text!r}"
        )
    return dict(zip(ACCELERATORS, counts, strict=True))


def build_fleet(counts: dict[str, int]) -> FleetSpec:
    """Build a fleet with one variant per accelerator and GPUs for every replica."""
    variants = tuple(
        VariantSpec(
            name=f"llama-8b-{accelerator.lower()}",
            accelerator=accelerator,
            replicas=replicas,
            gpus_per_replica=1,
            engine=EngineConfig(),
        )
        for accelerator, replicas in counts.items()
    )
    return FleetSpec(
        namespace="bench",
        model="meta-llama/Llama-3.1-8B-Instruct",
        gpus={
            accelerator: max(1, replicas) for accelerator, replicas in counts.items()
        },
        node_labels={accelerator: accelerator for accelerator in counts},
        variants=variants,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    trace = load_trace(DATA / "traces" / "AzureLLMInferenceTrace_conv.csv")
    profiles = load_accelerators(DATA / "accelerators.csv")
    cluster = Cluster(
        build_fleet(args.fleet),
        profiles,
        seed=args.seed,
        arrivals=replay(trace, args.compression),
    )

    started = time.perf_counter()
    cpu_started = time.process_time()
    cluster.advance_to(args.seconds)
    cpu_s = time.process_time() - cpu_started
    wall_s = time.perf_counter() - started

    status = cluster.status()
    pods = [pod for d in cluster.deployments.values() for pod in d.pods]
    counters = [pod.engine.counters for pod in pods]
    return {
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "sim_s": args.seconds,
        "compression": args.compression,
        "replicas": len(pods),
        "requests": status["arrived"],
        "iterations": sum(c.iterations for c in counters),
        "generation_tokens": sum(c.generation_tokens for c in counters),
        "completed": status["completed"],
        "timed_out": status["timed_out"],
        "rejected": status["rejected"],
        "preemptions": sum(c.preemptions for c in counters),
        "ttft_sum_s": round(sum(c.ttft.sum for c in counters), 6),
        "e2e_sum_s": round(sum(c.e2e.sum for c in counters), 6),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=3600.0, help="simulated seconds (default 3600)"
    )
    parser.add_argument(
        "--compression",
        type=float,
        default=8.0,
        help="divide trace arrival times by this factor (default 8)",
    )
    parser.add_argument(
        "--fleet",
        type=parse_fleet,
        default=parse_fleet("8,16,16,24"),
        help="replicas on H100-80GB,A100-80GB,L40S,L4 (default 8,16,16,24)",
    )
    parser.add_argument("--seed", type=int, default=1, help="cluster seed (default 1)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="also write cProfile statistics to this file and print the top 25",
    )
    args = parser.parse_args()
    if not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    if not args.compression > 0:
        parser.error(f"--compression must be > 0, got {args.compression}")

    if args.profile is None:
        result = run(args)
    else:
        profiler = cProfile.Profile()
        result = profiler.runcall(run, args)
        profiler.dump_stats(args.profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
