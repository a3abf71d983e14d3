"""Shared fixtures.

WVA_REQUIRE_SERVERS=1 (set by .ci/run) turns a skip for a missing server or
browser into a failure.
"""

import os
from typing import Any

import pytest

REQUIRE_SERVERS = os.environ.get("WVA_REQUIRE_SERVERS") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when the CI run requires every server."""
    if REQUIRE_SERVERS:
        pytest.fail(f"{reason} (WVA_REQUIRE_SERVERS=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Hash test passwords with MD5: the default PBKDF2 makes each login ~0.3 s."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def close_stray_connections(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """End database sessions that test threads left open, before teardown.

    PostgreSQL refuses to drop the test database while another session uses
    it, and a connection opened by a server or worker thread in a test is
    not closed by the test's own teardown.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.close()
