"""Create the demo superuser `admin` and the demo users of the demo team.

The password comes from WVA_ADMIN_PASSWORD, or is generated and printed
once in a box of # with the command that changes it. Users that already
exist keep their password, and nothing is printed for them.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from wva_web.catalog.models import Membership, Role, Team

DEMO_USERS = (
    ("viewer", Role.VIEWER),
    ("operator", Role.OPERATOR),
    ("approver", Role.APPROVER),
)


def demo_team_name() -> str:
    path = Path(settings.BASE_DIR) / "data" / "demo_fleet.json"
    return str(json.loads(path.read_text())["team"])


class Command(BaseCommand):
    help = "Create the demo superuser `admin` and users viewer, operator and approver."

    def handle(self, *args: Any, **options: Any) -> None:
        from_env = os.environ.get("WVA_ADMIN_PASSWORD", "")
        password = from_env or secrets.token_urlsafe(16)
        users = get_user_model().objects
        created: list[str] = []
        with transaction.atomic():
            team, _ = Team.objects.get_or_create(name=demo_team_name())
            if not users.filter(username="admin").exists():
                users.create_superuser("admin", email="", password=password)
                created.append("admin")
            for username, role in DEMO_USERS:
                user = users.filter(username=username).first()
                if user is None:
                    user = users.create_user(username, email="", password=password)
                    created.append(username)
                Membership.objects.get_or_create(
                    team=team, user=user, defaults={"role": role}
                )
        if not created:
            self.stdout.write("demo users already exist; passwords unchanged")
            return
        names = ", ".join(created)
        if from_env:
            self.stdout.write(
                f"created {names} with the password from WVA_ADMIN_PASSWORD"
            )
            return
        self.stdout.write(
            framed(
                [
                    f"Created the demo users {names}.",
                    f"Generated password (shown once): {password}",
                    "Change it with: .venv/bin/python manage.py changepassword USER",
                    "or set WVA_ADMIN_PASSWORD before the first run.",
                ]
            )
        )


def framed(lines: list[str]) -> str:
    """Draw a box of # around the lines, so they stand out in a long log."""
    width = max(len(line) for line in lines)
    border = "#" * (width + 4)
    body = [f"# {line.ljust(width)} #" for line in lines]
    return "\n".join(["", border, *body, border, ""])
