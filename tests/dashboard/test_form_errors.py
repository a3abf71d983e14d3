"""Every form error on the Actions page names the value and the allowed range."""

from __future__ import annotations

from django.contrib.messages import get_messages

from tests.dashboard.conftest import World, make_action
from wva_web.dashboard import forms


def error_of(world: World, url: str, data: dict[str, str]) -> str:
    client = world.client("approver_a")
    response = client.post(url, data)
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert len(texts) == 1
    return texts[0]


def test_override_text_replicas_named(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    text = error_of(world, f"/actions/{action.pk}/override/", {"replicas": "abc"})
    assert text == (
        'Invalid override: replicas "abc" is not valid: '
        "enter a whole number from 1 to 8"
    )


def test_override_fraction_named(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    text = error_of(world, f"/actions/{action.pk}/override/", {"replicas": "2.5"})
    assert 'replicas "2.5" is not valid' in text
    assert "from 1 to 8" in text


def test_override_missing_replicas(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    text = error_of(world, f"/actions/{action.pk}/override/", {"replicas": ""})
    assert text == (
        "Invalid override: replicas is missing: enter a whole number from 1 to 8"
    )


def test_override_minutes_over_max(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    data = {"replicas": "3", "duration_min": "10081"}
    text = error_of(world, f"/actions/{action.pk}/override/", data)
    assert text == (
        'Invalid override: duration_min "10081" is not valid: '
        f"enter a whole number from 1 to {forms.MAX_PIN_MINUTES}"
    )


def test_reject_message_too_long(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    data = {"message": "m" * 2001}
    text = error_of(world, f"/actions/{action.pk}/reject/", data)
    assert text == (
        "Invalid rejection: message has 2001 characters: enter at most 2000"
    )


def test_manual_scale_value_named(world: World) -> None:
    client = world.client("operator_a")
    response = client.post(f"/variants/{world.alpha.pk}/scale/", {"to_replicas": "x"})
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == [
        'Invalid request: to_replicas "x" is not valid: '
        "enter a whole number from 1 to 8"
    ]


def test_override_hidden_action_uses_form_range(world: World) -> None:
    # Given an action of team b, which approver_a cannot see.
    action = make_action(world.bravo, 2, 3)
    text = error_of(world, f"/actions/{action.pk}/override/", {"replicas": "-1"})
    assert text == (
        'Invalid override: replicas "-1" is not valid: '
        f"enter a whole number of at least {forms.MIN_REPLICAS}"
    )
