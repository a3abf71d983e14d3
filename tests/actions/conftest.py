"""Fixtures of the action and API tests: two teams, their people and variants."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User

from tests.actions.builders import make_team, make_user, make_variant
from wva_web.catalog.models import Team, Variant
from wva_web.control import actions


@dataclass
class World:
    team_a: Team
    team_b: Team
    u1: User  # operator in team-a
    u2: User  # approver in team-a
    u3: User  # approver in team-b only
    viewer_b: User  # viewer in team-b
    viewer_a: User  # viewer in team-a
    superuser: User
    variant_a: Variant  # team-a, 2 replicas
    variant_b: Variant  # team-b, 3 replicas


def build_world() -> World:
    team_a = make_team("team-a")
    team_b = make_team("team-b")
    return World(
        team_a=team_a,
        team_b=team_b,
        u1=make_user("u1", team_a, "operator"),
        u2=make_user("u2", team_a, "approver"),
        u3=make_user("u3", team_b, "approver"),
        viewer_b=make_user("v", team_b, "viewer"),
        viewer_a=make_user("va", team_a, "viewer"),
        superuser=make_user("s", superuser=True),
        variant_a=make_variant(team_a, "llama-h100-a", replicas=2),
        variant_b=make_variant(team_b, "llama-l4-b", replicas=3),
    )


@pytest.fixture
def world(db: None) -> World:
    return build_world()


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the apply tasks queued after commit instead of sending them."""
    sent: list[int] = []
    monkeypatch.setattr(actions, "_send_apply", sent.append)
    return sent
