"""Fixtures of the comparison tests: users by role, a temp folder, short options.

`SHORT` replays 60 s of the Azure conversation trace at half its load with
two policies, so a real `run_comparison` finishes in a few seconds.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from wva_web.catalog.models import Membership, Role, Team
from wva_web.simulate.models import ComparisonPlot, ComparisonRun, RunStatus
from wva_web.simulate.options import ComparisonOptions

PASSWORD = "comparison-test-password"
SHORT = ComparisonOptions(
    trace="azure-conv",
    scale=0.5,
    scale_mode="compress",
    policies=("hpa-kv", "wva"),
    seed=3,
    duration_s=60.0,
)


@dataclass
class People:
    """Users keyed by name: `viewer`, `operator`, `approver`, `outsider`, `root`."""

    users: dict[str, User]

    def client(self, name: str) -> Client:
        client = Client()
        client.force_login(self.users[name])
        return client


@pytest.fixture
def people(db: None) -> People:
    team = Team.objects.create(name="team-a")
    users = {}
    for name, role in (
        ("viewer", Role.VIEWER),
        ("operator", Role.OPERATOR),
        ("approver", Role.APPROVER),
    ):
        users[name] = User.objects.create_user(name, password=PASSWORD)
        Membership.objects.create(team=team, user=users[name], role=role)
    users["outsider"] = User.objects.create_user("outsider", password=PASSWORD)
    users["root"] = User.objects.create_superuser("root", password=PASSWORD)
    return People(users)


@pytest.fixture(autouse=True)
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `tempfile` at the test's own folder, where plots are rendered."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def add_plot(run: ComparisonRun, name: str, html: str) -> ComparisonPlot:
    return ComparisonPlot.objects.create(
        run=run, name=name, html=html, size_bytes=len(html.encode("utf-8"))
    )


def make_run(
    user: User | None,
    options: ComparisonOptions = SHORT,
    status: str = RunStatus.QUEUED,
    **fields: Any,
) -> ComparisonRun:
    now = timezone.now()
    defaults: dict[str, Any] = {
        "created_by": user,
        "created_at": now,
        "updated_at": now,
        "options": options.to_json(),
        "status": status,
    }
    defaults.update(fields)
    return ComparisonRun.objects.create(**defaults)
