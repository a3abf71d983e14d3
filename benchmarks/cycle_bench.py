"""Time control cycles against the emulated demo cluster.

Usage: .venv/bin/python benchmarks/cycle_bench.py [--cycles N] [--replicas R]

Runs the demo fleet in-process on a manual clock, scales every variant to R
replicas, advances 30 simulated seconds between cycles and prints the
median and max of each cycle phase in milliseconds. The database is a
fresh SQLite file in a temporary folder, so the figures include SQLite
writes but no network beyond loopback.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10, help="cycles to time")
    parser.add_argument(
        "--replicas", type=int, default=2, help="replicas per variant (at most its max)"
    )
    args = parser.parse_args()
    if args.cycles < 1 or args.replicas < 1:
        parser.error("--cycles and --replicas must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="wva-cycle-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ.setdefault("WVA_ADMIN_PASSWORD", "benchmark-only-password")
    os.environ["DJANGO_SETTINGS_MODULE"] = "wva_web.settings"
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from fleetsim.emulator import Emulator
    from wva_web.catalog.models import Variant
    from wva_web.control.cycle import CycleService
    from wva_web.integrations import kube

    call_command("migrate", verbosity=0)
    call_command("load_demo", stdout=io.StringIO())
    settings.WVA_LEADER_ELECTION = False

    with Emulator(
        ROOT / "data" / "demo_fleet.json", workdir / "emulator", clock="manual", seed=1
    ) as emulator:
        settings.WVA_KUBECONFIG = str(emulator.kubeconfig_path)
        actuator = kube.get_actuator()
        for variant in Variant.objects.all():
            actuator.set_replicas(variant, min(args.replicas, variant.max_replicas))
        emulator.advance(120.0)
        # Advisory mode: the benchmark measures the cycle, not the fleet's growth.
        Variant.objects.update(mode=Variant.Mode.ADVISORY)
        phases: dict[str, list[float]] = {}
        for _ in range(args.cycles):
            emulator.advance(30.0)
            cycle = CycleService().run()
            if cycle is None:
                print("a cycle was skipped: the cycle lock was held", file=sys.stderr)
                return 1
            for phase, ms in cycle.timings_ms.items():
                phases.setdefault(phase, []).append(float(ms))
        pods = sum(len(emulator.pod_names(v.name)) for v in Variant.objects.all())

    print(f"{args.cycles} cycles, {pods} pods, demo fleet of 4 variants")
    print(f"{'phase':<16}{'median ms':>12}{'max ms':>10}")
    for phase, values in phases.items():
        print(f"{phase:<16}{statistics.median(values):>12.1f}{max(values):>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
