"""A variant on H100-80GB, the fake cluster, and a logged-in superuser."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.control.fakes import FakeKube
from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    ServiceClass,
    Team,
    Variant,
)


@pytest.fixture
def variant(db: None) -> Variant:
    team = Team.objects.create(name="team-a")
    service_class = ServiceClass.objects.create(
        name="interactive", ttft_ms=2000, itl_ms=100
    )
    model = InferenceModel.objects.create(
        name="M", team=team, service_class=service_class
    )
    h100 = Accelerator.objects.create(
        name="H100-80GB",
        memory_gb=80,
        usd_per_gpu_hour=12.29,
        power_idle_w=100,
        power_mid_w=300,
        power_full_w=700,
        gpus_available=8,
    )
    return Variant.objects.create(
        name="a",
        model=model,
        accelerator=h100,
        namespace="llm",
        workload_name="a",
        min_replicas=1,
        max_replicas=4,
        mode=Variant.Mode.APPROVAL,
    )


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def admin_client(django_user_model: Any) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    client = Client()
    client.force_login(user)
    return client
