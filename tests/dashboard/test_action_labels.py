"""Wording of the actions page: overrides, pins, reason texts and timestamps."""

from __future__ import annotations

import datetime as dt
import re

from tests.dashboard.conftest import World, make_action
from wva_web.control.models import ActionState, Decision, VariantState
from wva_web.dashboard import reasons
from wva_web.dashboard.templatetags.dashboard import stamp, stamps_in

# A timestamp with microseconds or a UTC offset, as isoformat() writes it.
RAW_ISO = re.compile(r"\d{2}:\d{2}:\d{2}(\.\d+|[+-]\d{2}:\d{2})")
SCRIPT = re.compile(r"<script.*?</script>", re.DOTALL)


def overridden(world: World, minutes: int | None) -> None:
    decided = world.now - dt.timedelta(minutes=2)
    until = None if minutes is None else decided + dt.timedelta(minutes=minutes)
    make_action(
        world.alpha,
        2,
        3,
        state=ActionState.OVERRIDDEN,
        override_replicas=4,
        override_until=until,
        decided_at=decided,
        decided_by=world.users["approver_a"],
    )


def test_override_label_names_both_counts(world: World) -> None:
    overridden(world, 30)
    body = world.client("viewer_a").get("/actions/").content.decode()
    assert "override: 4 replicas instead of the proposed 3" in body
    assert "(override of 3)" not in body


def test_override_history_shows_pin_duration(world: World) -> None:
    # given an override pinned for 30 minutes
    overridden(world, 30)
    until = world.now - dt.timedelta(minutes=2) + dt.timedelta(minutes=30)
    # when
    body = world.client("viewer_a").get("/actions/").content.decode()
    # then
    assert f"pinned for 30 min, until {until:%Y-%m-%d %H:%M:%S}" in body


def test_override_without_pin_says_so(world: World) -> None:
    overridden(world, None)
    body = world.client("viewer_a").get("/actions/").content.decode()
    assert "not pinned: the next control cycle plans from this count" in body


def test_history_empty_while_action_pending(world: World) -> None:
    # given one pending action and no decided one
    make_action(world.alpha, 4, 5)
    # when
    body = world.client("viewer_a").get("/actions/").content.decode()
    history = body[body.index('id="history"') :]
    # then the history does not claim that no scale action exists
    assert "No decided actions yet." in history
    assert "No scale action yet." not in history


def test_reason_code_shown_with_text(world: World) -> None:
    make_action(world.alpha, 4, 5, reasons=["scale_up:spare_kv"])
    body = world.client("viewer_a").get("/actions/").content.decode()
    assert (
        '<code>scale_up:spare_kv</code> <span class="reason-text">'
        "(scale up: mean spare KV-cache below trigger)</span>"
    ) in body


def test_unknown_reason_code_shown_alone(world: World) -> None:
    make_action(world.alpha, 4, 5, reasons=["brand_new_code"])
    body = world.client("viewer_a").get("/actions/").content.decode()
    assert "<code>brand_new_code</code></li>" in body


def test_reason_text_by_prefix() -> None:
    assert reasons.reason_text("no_free_gpu:L4") == "no free GPU"
    assert reasons.reason_text("missing_metrics:pod-a,pod-b") == (
        "replicas without metrics"
    )
    assert reasons.reason_text("nothing_known") == ""


def test_stamp_drops_microseconds_and_offset() -> None:
    assert stamp("2026-12-04T16:10:40.175659+00:00") == "2026-12-04 16:10:40"
    assert stamp(dt.datetime(2026, 12, 4, 16, 10, 40, 5, tzinfo=dt.UTC)) == (
        "2026-12-04 16:10:40"
    )
    assert stamp(None) == ""


def test_stamps_in_message() -> None:
    text = "pinned until 2026-12-04T16:40:00.5+00:00"
    assert stamps_in(text) == "pinned until 2026-12-04 16:40:00"


def test_condition_since_without_microseconds(world: World) -> None:
    # given a condition whose since time has microseconds
    state = VariantState.objects.get(variant=world.alpha)
    state.conditions = [
        {
            "type": "AbleToScale",
            "status": "False",
            "reason": "pinned",
            "message": "pinned until 2026-12-04T16:40:00.123456+00:00",
            "since": "2026-12-04T16:10:40.175659+00:00",
        }
    ]
    state.save(update_fields=["conditions"])
    # when
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content
    conditions = body.decode().split('id="conditions"')[1].split("</table>")[0]
    # then
    assert "<td>2026-12-04 16:10:40</td>" in conditions
    assert "pinned until 2026-12-04 16:40:00" in conditions
    assert RAW_ISO.search(conditions) is None


def test_decision_pin_message_without_microseconds(world: World) -> None:
    Decision.objects.filter(variant=world.alpha).update(
        bound_by="pinned", message="pinned until 2026-12-04T16:40:00.123456+00:00"
    )
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content
    assert "pinned until 2026-12-04 16:40:00" in body.decode()
    assert "16:40:00.123456" not in body.decode()


def test_pages_show_no_raw_iso_times(world: World) -> None:
    # given a decided action with microsecond times
    overridden(world, 30)
    client = world.client("root")
    for url in ("/", "/actions/", f"/variants/{world.alpha.pk}/", "/cycles/"):
        # when
        body = client.get(url).content.decode()
        # then no text outside the chart data shows a raw ISO time
        found = RAW_ISO.search(SCRIPT.sub("", body))
        assert found is None, f"{url}: {found}"
