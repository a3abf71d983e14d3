"""Load the demo catalogue: accelerators, team, service classes, model, variants.

Running it again updates the accelerator rows from the files and creates
what is missing, but leaves existing service classes, models and variants
as operators may have edited them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    ServiceClass,
    Team,
    Variant,
)
from wva_web.control.schedule import ensure_cycle_schedule

DATA_DIR = Path(settings.BASE_DIR) / "data"


def read_accelerators(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["accelerator"]: row for row in csv.DictReader(handle)}


def latency_profile(row: dict[str, str]) -> dict[str, float]:
    """Profile in ms from the csv coefficients of one accelerator.

    Decode step `alpha + beta * batch`, prefill `gamma + delta * input tokens
    * batch`; `ctx_per_1k` is the step time added per 1,000 context tokens
    and `kv_tokens` the KV-cache pool of Llama-3.1-8B.
    """
    return {
        "alpha": float(row["step_base_ms"]),
        "beta": float(row["step_per_seq_ms"]),
        "gamma": float(row["step_base_ms"]),
        "delta": float(row["prefill_per_token_ms"]),
        "ctx_per_1k": float(row["step_per_1k_ctx_ms"]),
        "kv_tokens": float(row["kv_tokens_llama31_8b"]),
    }


class Command(BaseCommand):
    help = "Load the demo catalogue and the control-cycle beat schedule (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fleet",
            default=str(DATA_DIR / "demo_fleet.json"),
            help="fleet file (JSON) with the team, model, variants and GPU budgets",
        )
        parser.add_argument(
            "--accelerators",
            default=str(DATA_DIR / "accelerators.csv"),
            help="accelerator prices, power and performance coefficients (CSV)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fleet = json.loads(Path(options["fleet"]).read_text())
        rows = read_accelerators(Path(options["accelerators"]))
        with transaction.atomic():
            accelerators = self._accelerators(rows, fleet)
            model = self._model(fleet)
            created = self._variants(fleet, model, accelerators, rows)
        task = ensure_cycle_schedule()
        self.stdout.write(
            f"demo catalogue loaded: {len(accelerators)} accelerators, "
            f"{created} new variants; beat entry {task.name!r} every "
            f"{task.interval.every} s"
        )

    def _accelerators(
        self, rows: dict[str, dict[str, str]], fleet: dict[str, Any]
    ) -> dict[str, Accelerator]:
        budgets = fleet.get("accelerators", {})
        result = {}
        for name, row in rows.items():
            budget = budgets.get(name, {})
            accelerator, _ = Accelerator.objects.update_or_create(
                name=name,
                defaults={
                    "vendor": "AMD" if name.startswith("MI") else "NVIDIA",
                    "node_label_value": budget.get("node_label_value", ""),
                    # The csv gives memory in GiB.
                    "memory_gb": float(row["memory_gib"]),
                    "usd_per_gpu_hour": float(row["usd_per_gpu_hour"]),
                    "power_idle_w": float(row["power_idle_w"]),
                    "power_mid_w": float(row["power_mid_w"]),
                    "power_full_w": float(row["power_full_w"]),
                    "gpus_available": budget.get("gpus"),
                    "source": "data/accelerators.csv, data/demo_fleet.json",
                },
            )
            result[name] = accelerator
        return result

    def _model(self, fleet: dict[str, Any]) -> InferenceModel:
        team, _ = Team.objects.get_or_create(name=fleet["team"])
        classes = {}
        for spec in fleet["service_classes"]:
            service_class, _ = ServiceClass.objects.get_or_create(
                name=spec["name"],
                defaults={
                    "priority": spec["priority"],
                    "ttft_ms": spec["ttft_ms"],
                    "itl_ms": spec["itl_ms"],
                    "kind": spec["kind"],
                },
            )
            classes[spec["name"]] = service_class
        model, _ = InferenceModel.objects.get_or_create(
            name=fleet["model"],
            defaults={
                "team": team,
                "service_class": classes[fleet["model_service_class"]],
            },
        )
        return model

    def _variants(
        self,
        fleet: dict[str, Any],
        model: InferenceModel,
        accelerators: dict[str, Accelerator],
        rows: dict[str, dict[str, str]],
    ) -> int:
        engine = fleet.get("engine", {})
        created = 0
        for spec in fleet["variants"]:
            _, is_new = Variant.objects.get_or_create(
                name=spec["name"],
                defaults={
                    "model": model,
                    "accelerator": accelerators[spec["accelerator"]],
                    "gpus_per_replica": spec.get("gpus_per_replica", 1),
                    "max_num_seqs": engine.get("max_num_seqs", 256),
                    "max_model_len": engine.get("max_model_len", 8192),
                    "max_num_batched_tokens": engine.get("max_num_batched_tokens"),
                    "profile": latency_profile(rows[spec["accelerator"]]),
                    "min_replicas": spec["min_replicas"],
                    "max_replicas": spec["max_replicas"],
                    "mode": spec.get("mode", Variant.Mode.APPROVAL),
                    "namespace": fleet["namespace"],
                    "kind": spec.get("kind", Variant.Kind.DEPLOYMENT),
                    "workload_name": spec["name"],
                },
            )
            created += int(is_new)
        return created
