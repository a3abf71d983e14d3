"""The API tests share the fixtures of the action tests."""

from tests.actions.conftest import queued, world  # noqa: F401
