"""Control cycle: times in hold messages read `YYYY-MM-DD HH:MM UTC`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.control.fakes import NOW, FakeKube, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import Variant
from wva_web.control.cycle_limits import minute_utc
from wva_web.control.models import (
    ActionState,
    ControlCycle,
    Decision,
    ScaleAction,
    VariantState,
)

# An hour after NOW, with seconds and microseconds the messages leave out.
PIN_END = NOW + dt.timedelta(hours=1, seconds=30, microseconds=123456)


def decision(cycle: ControlCycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


@pytest.fixture
def saturated(make_model: Any, make_variant: Any, kube: FakeKube) -> FakeMetrics:
    """A on L40S at 3 and B on H100-80GB at 2, mode approval, all saturated."""
    model = make_model()
    make_variant(model, "a", "L40S", max_replicas=8)
    make_variant(model, "b", "H100-80GB", max_replicas=8)
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    kube.add("b", 2, [FakePod(f"b{i}") for i in (1, 2)])
    names = ["a1", "a2", "a3", "b1", "b2"]
    return FakeMetrics({name: exposition(kv=0.9, waiting=1) for name in names})


def test_minute_utc_drops_seconds_and_offset() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    later = dt.datetime(2026, 1, 5, 14, 7, 59, 999999, tzinfo=plus_two)
    assert minute_utc(later) == "2026-01-05 12:07 UTC"


def test_pin_message_in_minutes_utc(saturated: FakeMetrics, run_cycle: Any) -> None:
    # Given A pinned until an hour and 30.123456 s after the cycle.
    Variant.objects.filter(name="a").update(pinned_replicas=3, pinned_until=PIN_END)
    # When the cycle runs.
    cycle = run_cycle(saturated, NOW)
    # Then the decision and the AbleToScale condition name the end to the minute.
    assert decision(cycle, "a").message == "pinned until 2026-01-05 13:00 UTC"
    conditions = VariantState.objects.get(variant__name="a").conditions
    able = next(item for item in conditions if item["type"] == "AbleToScale")
    assert able["message"] == "pinned until 2026-01-05 13:00 UTC"


def test_rejection_cool_down_in_minutes_utc(
    saturated: FakeMetrics, run_cycle: Any, settings: Any
) -> None:
    # Given a scale-up of A rejected 100.5 s before the cycle, with a 600 s cool-down.
    settings.WVA_REJECT_COOLDOWN_S = 600
    Variant.objects.filter(name="b").update(max_replicas=2)
    ScaleAction.objects.create(
        variant=Variant.objects.get(name="a"),
        created_at=NOW,
        from_replicas=3,
        to_replicas=4,
        state=ActionState.REJECTED,
        decided_at=NOW - dt.timedelta(seconds=100.5),
    )
    # When the saturated model runs a cycle.
    cycle = run_cycle(saturated, NOW)
    # Then A's hold names the end of the cool-down to the minute.
    assert decision(cycle, "a").message.endswith("cool-down until 2026-01-05 12:08 UTC")
