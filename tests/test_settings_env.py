"""Settings read from the environment fail at start-up on invalid values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def check_with(**env: str) -> subprocess.CompletedProcess[str]:
    """Run `manage.py check` with extra environment variables."""
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WVA_CYCLE_PERIOD_S", "nan"),
        ("WVA_CYCLE_PERIOD_S", "abc"),
        ("WVA_CYCLE_PERIOD_S", "0"),
        ("WVA_SCRAPE_TIMEOUT_S", "-1"),
        ("WVA_STARTUP_DELAY_S", "1e400"),
    ],
)
def test_invalid_duration_names_variable(name: str, value: str) -> None:
    result = check_with(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"invalid {name} {value!r}" in result.stderr


def test_startup_delay_above_an_hour_rejected() -> None:
    result = check_with(WVA_STARTUP_DELAY_S="7200")
    assert result.returncode != 0
    assert "invalid WVA_STARTUP_DELAY_S 7200" in result.stderr
    assert "from 0 to 3600" in result.stderr


def test_zero_startup_delay_accepted() -> None:
    result = check_with(WVA_STARTUP_DELAY_S="0")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WVA_METRICS_SOURCE": "foo"}, "invalid WVA_METRICS_SOURCE 'foo'"),
        (
            {
                "WVA_METRICS_SOURCE": "prometheus",
                "WVA_PROMETHEUS_URL": "http://169.254.169.254/",
            },
            "link-local",
        ),
        (
            {
                "WVA_METRICS_SOURCE": "prometheus",
                "WVA_PROMETHEUS_URL": "http://admin:secret@127.0.0.1:9090",
            },
            "user name or password",
        ),
        (
            {
                "WVA_METRICS_SOURCE": "prometheus",
                "WVA_PROMETHEUS_URL": "localhost:9090",
            },
            "use http:// or https://",
        ),
        ({"WVA_PROMETHEUS_TIMEOUT_S": "abc"}, "invalid WVA_PROMETHEUS_TIMEOUT_S 'abc'"),
        ({"WVA_COMPARE_MAX_SCALE": "nan"}, "invalid WVA_COMPARE_MAX_SCALE 'nan'"),
        ({"WVA_COMPARE_MAX_RUNNING": "0"}, "invalid WVA_COMPARE_MAX_RUNNING '0'"),
        ({"WVA_COMPARE_TIME_LIMIT_S": "-100"}, "invalid WVA_COMPARE_TIME_LIMIT_S"),
    ],
)
def test_invalid_setting_named(env: dict[str, str], message: str) -> None:
    result = check_with(**env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "secret" not in result.stderr
