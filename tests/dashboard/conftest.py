"""Fixtures of the page tests: two teams, their users, variants and records.

Team a owns variant `alpha-h100` (4 replicas on H100-80GB), team b owns
`bravo-l40s` (2 replicas on L40S). One finished cycle sampled both.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    Membership,
    Role,
    ServiceClass,
    Team,
    Variant,
)
from wva_web.control.models import (
    AcceleratorSample,
    ActionState,
    ControlCycle,
    CycleStatus,
    Decision,
    MetricSample,
    SampleStatus,
    ScaleAction,
    VariantState,
)

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True, scope="session")
def static_root() -> None:
    """Create STATIC_ROOT: WhiteNoise warns, and warnings fail tests, without it."""
    # NOTE: settings could create the directory as they do for var/.
    settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)


@dataclass
class World:
    """Rows created for one test; users are keyed by their name."""

    now: dt.datetime
    team_a: Team
    team_b: Team
    h100: Accelerator
    l40s: Accelerator
    alpha: Variant
    bravo: Variant
    cycle: ControlCycle
    users: dict[str, User]

    def client(self, name: str) -> Client:
        client = Client()
        client.force_login(self.users[name])
        return client


def make_user(name: str, team: Team | None = None, role: Role | None = None) -> User:
    user = User.objects.create_user(name, password=PASSWORD)
    if team is not None and role is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


def make_variant(
    name: str, team: Team, accelerator: Accelerator, **fields: Any
) -> Variant:
    service = ServiceClass.objects.get_or_create(
        name="interactive", defaults={"ttft_ms": 500, "itl_ms": 50}
    )[0]
    model = InferenceModel.objects.create(
        name=f"model-of-{name}", team=team, service_class=service
    )
    defaults: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 8,
        "namespace": "llm",
        "workload_name": name,
        "mode": Variant.Mode.APPROVAL,
    }
    defaults.update(fields)
    return Variant.objects.create(
        name=name, model=model, accelerator=accelerator, **defaults
    )


def make_cycle(
    started: dt.datetime, status: str = CycleStatus.OK, **fields: Any
) -> ControlCycle:
    return ControlCycle.objects.create(
        started_at=started,
        finished_at=started + dt.timedelta(seconds=2),
        status=status,
        policy="wva-v1",
        **fields,
    )


def make_sample(
    cycle: ControlCycle,
    variant: Variant,
    pod: str,
    kv: float | None,
    waiting: float | None,
    status: str = SampleStatus.OK,
) -> MetricSample:
    return MetricSample.objects.create(
        cycle=cycle,
        variant=variant,
        pod=pod,
        sampled_at=cycle.started_at,
        kv_cache_usage=kv,
        num_requests_waiting=waiting,
        num_requests_running=3.0 if kv is not None else None,
        status=status,
    )


def make_action(
    variant: Variant,
    from_replicas: int,
    to_replicas: int,
    state: str = ActionState.PENDING,
    requested_by: User | None = None,
    **fields: Any,
) -> ScaleAction:
    return ScaleAction.objects.create(
        variant=variant,
        created_at=timezone.now(),
        from_replicas=from_replicas,
        to_replicas=to_replicas,
        state=state,
        requested_by=requested_by,
        **fields,
    )


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    """Hash test passwords with MD5: PBKDF2 takes about 0.3 s per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None) -> World:
    now = timezone.now().replace(microsecond=0)
    team_a = Team.objects.create(name="team-a")
    team_b = Team.objects.create(name="team-b")
    h100 = Accelerator.objects.create(
        name="H100-80GB",
        memory_gb=80,
        usd_per_gpu_hour=12.29,
        power_idle_w=100,
        power_mid_w=400,
        power_full_w=700,
        gpus_available=8,
    )
    l40s = Accelerator.objects.create(
        name="L40S",
        memory_gb=48,
        usd_per_gpu_hour=2.0,
        power_idle_w=60,
        power_mid_w=200,
        power_full_w=350,
        gpus_available=None,
    )
    alpha = make_variant("alpha-h100", team_a, h100)
    bravo = make_variant("bravo-l40s", team_b, l40s)
    cycle = make_cycle(now - dt.timedelta(minutes=1))
    for i, kv in enumerate((0.40, 0.45, 0.50, 0.55), 1):
        make_sample(cycle, alpha, f"alpha-h100-pod-{i}", kv, 1.0)
    for i, kv in enumerate((0.30, 0.35), 1):
        make_sample(cycle, bravo, f"bravo-l40s-pod-{i}", kv, 0.0)
    Decision.objects.create(
        cycle=cycle,
        variant=alpha,
        current_replicas=4,
        ready_replicas=4,
        target_replicas=4,
        hpa_target_replicas=3,
        reasons=["hold:within_triggers"],
    )
    Decision.objects.create(
        cycle=cycle,
        variant=bravo,
        current_replicas=2,
        ready_replicas=2,
        target_replicas=2,
        hpa_target_replicas=None,
        reasons=["bravo-reason"],
    )
    for variant, replicas in ((alpha, 4), (bravo, 2)):
        VariantState.objects.create(
            variant=variant,
            updated_at=cycle.started_at,
            last_cycle=cycle,
            current_replicas=replicas,
            ready_replicas=replicas,
            proposed_replicas=replicas,
            hpa_target_replicas=3 if variant == alpha else None,
        )
    AcceleratorSample.objects.create(
        cycle=cycle,
        accelerator=h100,
        at=cycle.started_at,
        replicas=4,
        ready_replicas=4,
        gpus_used=4,
        utilisation=0.475,
        power_w=1820.0,
        usd_per_hour=49.16,
    )
    users = {
        "viewer_a": make_user("viewer_a", team_a, Role.VIEWER),
        "operator_a": make_user("operator_a", team_a, Role.OPERATOR),
        "approver_a": make_user("approver_a", team_a, Role.APPROVER),
        "approver_a2": make_user("approver_a2", team_a, Role.APPROVER),
        "viewer_b": make_user("viewer_b", team_b, Role.VIEWER),
        "approver_b": make_user("approver_b", team_b, Role.APPROVER),
    }
    users["root"] = User.objects.create_superuser("root", password=PASSWORD)
    return World(now, team_a, team_b, h100, l40s, alpha, bravo, cycle, users)
