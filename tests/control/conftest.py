"""Catalogue fixtures and a cycle factory with the fake cluster and metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.control.fakes import NOW, FakeKube, FakeMetrics
from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    ServiceClass,
    Team,
    Variant,
)
from wva_web.control.cycle import CycleService
from wva_web.integrations.kube import Actuator

PRICES = {
    "H100-80GB": 12.29,
    "H200": 10.60,
    "A100-80GB": 5.12,
    "L40S": 1.86,
    "L4": 0.80,
}


@pytest.fixture
def accelerators(db: None) -> dict[str, Accelerator]:
    return {
        name: Accelerator.objects.create(
            name=name,
            memory_gb=80,
            usd_per_gpu_hour=price,
            power_idle_w=100,
            power_mid_w=300,
            power_full_w=400,
            gpus_available=8,
        )
        for name, price in PRICES.items()
    }


@pytest.fixture
def make_model(db: None) -> Callable[..., InferenceModel]:
    team, _ = Team.objects.get_or_create(name="team-a")
    service_class, _ = ServiceClass.objects.get_or_create(
        name="interactive", defaults={"ttft_ms": 2000, "itl_ms": 100}
    )

    def make(name: str = "M") -> InferenceModel:
        return InferenceModel.objects.create(
            name=name, team=team, service_class=service_class
        )

    return make


@pytest.fixture
def make_variant(
    accelerators: dict[str, Accelerator],
) -> Callable[..., Variant]:
    def make(
        model: InferenceModel, name: str, accelerator: str, **fields: Any
    ) -> Variant:
        values: dict[str, Any] = {
            "min_replicas": 1,
            "max_replicas": 8,
            "mode": Variant.Mode.APPROVAL,
        }
        values.update(fields)
        return Variant.objects.create(
            name=name,
            model=model,
            accelerator=accelerators[accelerator],
            namespace="llm",
            workload_name=name,
            **values,
        )

    return make


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def run_cycle(kube: FakeKube) -> Callable[[FakeMetrics], Any]:
    """Run one cycle under the lock with the fake cluster and the given metrics."""

    def run(source: FakeMetrics, at: Any = NOW) -> Any:
        # Scrapes and new pods carry the cycle's time, as in a live cluster.
        source.at = at
        kube.clock = at
        actuator = Actuator(apps=kube, core=kube, autoscaling=kube, dry_run=False)
        service = CycleService(
            metrics_source=source, actuator=actuator, clock=lambda: at
        )
        return service.run()

    return run
