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
