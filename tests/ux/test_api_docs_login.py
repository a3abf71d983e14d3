"""A signed-out browser at the API reference lands on the login page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

DOCS = "/api/v1/docs/"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.django_db
def test_browser_redirected_to_login() -> None:
    response = Client().get(DOCS, HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/api/v1/docs/"


@pytest.mark.django_db
def test_query_string_kept_in_next() -> None:
    response = Client().get(f"{DOCS}?x=1", HTTP_ACCEPT="text/html")
    assert response["Location"] == "/login/?next=/api/v1/docs/%3Fx%3D1"


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["", "*/*", "application/json"])
def test_api_client_gets_401(accept: str) -> None:
    response = Client().get(DOCS, HTTP_ACCEPT=accept)
    assert response.status_code == 401


@pytest.mark.django_db
def test_bad_token_browser_redirected() -> None:
    response = Client().get(
        DOCS, HTTP_ACCEPT="text/html", HTTP_AUTHORIZATION="Token not-a-token"
    )
    assert response.status_code == 302


@pytest.mark.django_db
def test_signed_in_browser_gets_page() -> None:
    client = Client()
    client.force_login(User.objects.create_user("docs-reader", password="x-1234567"))
    response = client.get(DOCS, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"redoc" in response.content.lower()
