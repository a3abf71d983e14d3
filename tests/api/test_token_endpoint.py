"""POST /api/v1/auth/token/ trades a user name and password for an API token."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

PASSWORD = "token-endpoint-password"
URL = "/api/v1/auth/token/"


@pytest.fixture
def user(db: None, settings: Any) -> User:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return User.objects.create_user("ops", password=PASSWORD)


def test_token_for_valid_password_200(user: User) -> None:
    response = APIClient().post(
        URL, {"username": "ops", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=user).key


def test_token_same_on_second_request(user: User) -> None:
    client = APIClient()
    body = {"username": "ops", "password": PASSWORD}
    first = client.post(URL, body, format="json").json()["token"]
    second = client.post(URL, body, format="json").json()["token"]
    assert first == second


def test_token_from_form_body_200(user: User) -> None:
    response = APIClient().post(URL, {"username": "ops", "password": PASSWORD})
    assert response.status_code == 200


def test_token_wrong_password_400(user: User) -> None:
    response = APIClient().post(
        URL, {"username": "ops", "password": "wrong"}, format="json"
    )
    assert response.status_code == 400
    assert Token.objects.count() == 0


def test_token_inactive_user_400(user: User) -> None:
    user.is_active = False
    user.save(update_fields=["is_active"])
    response = APIClient().post(
        URL, {"username": "ops", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 400


def test_token_authenticates_next_request(user: User) -> None:
    client = APIClient()
    body = {"username": "ops", "password": PASSWORD}
    key = client.post(URL, body, format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/teams/").status_code == 200


def test_token_get_not_allowed_405(user: User) -> None:
    assert APIClient().get(URL).status_code == 405
