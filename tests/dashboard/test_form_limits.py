"""The page forms accept the same values as the API, in the page's units."""

from __future__ import annotations

from rest_framework import serializers as drf

from tests.dashboard.conftest import World, make_action
from wva_web.api import serializers
from wva_web.dashboard import forms


def serializer_field(cls: type[drf.Serializer], name: str) -> drf.Field:
    return cls().fields[name]


def test_reject_length_equals_api() -> None:
    api = serializer_field(serializers.RejectSerializer, "message").max_length
    assert forms.RejectForm().fields["message"].max_length == api
    assert api == 2000


def test_reject_input_maxlength_equals_api(world: World) -> None:
    make_action(world.alpha, 4, 5)
    body = world.client("approver_a").get("/actions/").content.decode()
    assert 'name="message" maxlength="2000"' in body


def test_reject_message_at_api_limit_accepted(world: World) -> None:
    # given a message of exactly the API's max length
    action = make_action(world.alpha, 4, 5)
    message = "m" * 2000
    # when
    world.client("approver_a").post(
        f"/actions/{action.pk}/reject/", {"message": message}
    )
    # then
    action.refresh_from_db()
    assert action.message == message


def test_override_minutes_become_seconds() -> None:
    form = forms.OverrideForm({"replicas": "3", "duration_min": "45"})
    assert form.is_valid()
    assert form.duration_s() == 2700.0


def test_override_max_minutes_match_api_seconds() -> None:
    api_max_s = serializer_field(serializers.OverrideSerializer, "duration_s").max_value
    assert forms.MAX_PIN_MINUTES * 60 == api_max_s
    over = forms.OverrideForm({"replicas": "3", "duration_min": "10081"})
    assert not over.is_valid()


def test_override_min_replicas_match_api() -> None:
    api = serializer_field(serializers.OverrideSerializer, "replicas").min_value
    assert forms.OverrideForm().fields["replicas"].min_value == api
    manual = serializer_field(serializers.ManualActionSerializer, "to_replicas")
    assert forms.ManualScaleForm().fields["to_replicas"].min_value == manual.min_value


def test_override_label_says_minutes(world: World) -> None:
    action = make_action(world.alpha, 4, 5)
    body = world.client("approver_a").get("/actions/").content.decode()
    assert "Pin for (minutes, optional)" in body
    assert f'max="10080" id="override-minutes-{action.pk}"' in body
    assert forms.OverrideForm().fields["duration_min"].label == "Pin for (minutes)"
