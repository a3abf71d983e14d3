"""Builders of catalogue rows, users and a fake actuator for API and action tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    Membership,
    ServiceClass,
    Team,
    Variant,
)
from wva_web.control.models import VariantState


def make_accelerator(name: str = "H100-80GB", price: float = 12.29) -> Accelerator:
    accelerator, _ = Accelerator.objects.get_or_create(
        name=name,
        defaults={
            "memory_gb": 80,
            "usd_per_gpu_hour": price,
            "power_idle_w": 100,
            "power_mid_w": 400,
            "power_full_w": 700,
        },
    )
    return accelerator


def make_service_class(name: str = "interactive") -> ServiceClass:
    service_class, _ = ServiceClass.objects.get_or_create(
        name=name, defaults={"ttft_ms": 500, "itl_ms": 50}
    )
    return service_class


def make_team(name: str) -> Team:
    team, _ = Team.objects.get_or_create(name=name)
    return team


def make_user(
    username: str, team: Team | None = None, role: str = "", superuser: bool = False
) -> User:
    # No password: tests sign in with force_login or a token, and hashing is slow.
    user = User.objects.create_user(username)
    if superuser:
        user.is_superuser = True
        user.is_staff = True
        user.save(update_fields=["is_superuser", "is_staff"])
    if team is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


def make_model(team: Team, name: str | None = None) -> InferenceModel:
    return InferenceModel.objects.create(
        name=name or f"llama-8b-{team.name}",
        team=team,
        service_class=make_service_class(),
    )


def make_variant(
    team: Team,
    name: str,
    replicas: int | None = 2,
    min_replicas: int = 1,
    max_replicas: int = 10,
    mode: str = Variant.Mode.APPROVAL,
    accelerator: Accelerator | None = None,
    namespace: str = "llm",
) -> Variant:
    model = InferenceModel.objects.filter(team=team).first() or make_model(team)
    variant = Variant.objects.create(
        name=name,
        model=model,
        accelerator=accelerator or make_accelerator(),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        mode=mode,
        namespace=namespace,
        workload_name=name.lower(),
    )
    if replicas is not None:
        set_state(variant, current=replicas)
    return variant


def set_state(
    variant: Variant, current: int, desired: int | None = None
) -> VariantState:
    state, _ = VariantState.objects.update_or_create(
        variant=variant,
        defaults={
            "updated_at": timezone.now(),
            "current_replicas": current,
            "desired_replicas": desired if desired is not None else current,
        },
    )
    return state


@dataclass
class FakeActuator:
    """An in-memory workload scaler: replica counts by variant name."""

    replicas: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, int, str, bool]] = field(default_factory=list)
    notes: list[Any] = field(default_factory=list)
    read_error: Exception | None = None
    set_error: Exception | None = None

    def read_replicas(self, variant: Variant) -> int:
        if self.read_error is not None:
            raise self.read_error
        return self.replicas[variant.name]

    def set_replicas(
        self,
        variant: Variant,
        replicas: int,
        victim_pod: str = "",
        dry_run: bool = False,
        note: Any = None,
    ) -> None:
        if self.set_error is not None:
            raise self.set_error
        self.calls.append((variant.name, replicas, victim_pod, dry_run))
        self.notes.append(note)
        if not dry_run:
            self.replicas[variant.name] = replicas
