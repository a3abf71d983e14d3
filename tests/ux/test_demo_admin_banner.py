"""The generated demo password is framed once, with the command that changes it."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command


@pytest.fixture
def first_run(db: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("WVA_ADMIN_PASSWORD", raising=False)
    out = io.StringIO()
    call_command("ensure_demo_admin", stdout=out)
    return out.getvalue()


def password_of(output: str) -> str:
    return output.split("(shown once): ", 1)[1].split()[0]


def test_password_framed(first_run: str) -> None:
    lines = [line for line in first_run.splitlines() if line]
    assert set(lines[0]) == {"#"}
    assert set(lines[-1]) == {"#"}
    assert all(line.startswith("# ") and line.endswith(" #") for line in lines[1:-1])
    assert len({len(line) for line in lines}) == 1


def test_frame_says_how_to_change(first_run: str) -> None:
    assert "manage.py changepassword USER" in first_run
    assert "WVA_ADMIN_PASSWORD" in first_run


def test_printed_password_works(first_run: str) -> None:
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(password_of(first_run))


def test_later_run_prints_no_password(first_run: str) -> None:
    out = io.StringIO()
    call_command("ensure_demo_admin", stdout=out)
    assert password_of(first_run) not in out.getvalue()
    assert "#" not in out.getvalue()


def test_env_password_not_printed(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WVA_ADMIN_PASSWORD", "from-the-env-42")
    out = io.StringIO()
    call_command("ensure_demo_admin", stdout=out)
    assert "from-the-env-42" not in out.getvalue()
