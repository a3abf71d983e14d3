"""The emulated cluster and a manual clock for the leader-election tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetsim.emulator import Emulator
from wva_web.integrations import leader

START = dt.datetime(2026, 1, 5, 12, 0, 0, tzinfo=dt.UTC)
LEASE_S = 90


class ManualClock:
    """A console clock that moves only when a test advances it."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def emulator(tmp_path: Path, settings: Any) -> Iterator[Emulator]:
    with Emulator(
        "data/demo_fleet.json",
        tmp_path / "emulator",
        port=0,
        clock="manual",
        seed=1,
        trace=False,
    ) as emu:
        settings.WVA_KUBECONFIG = str(emu.kubeconfig_path)
        settings.WVA_DRY_RUN = False
        settings.WVA_LEADER_NAMESPACE = "llm"
        settings.WVA_LEADER_ELECTION = True
        yield emu


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_elector(
    emulator: Emulator, clock: ManualClock
) -> Callable[..., leader.LeaderElector]:
    """Build an elector for one console instance against the emulated cluster."""

    def make(identity: str, **kwargs: Any) -> leader.LeaderElector:
        return leader.LeaderElector(
            identity=identity, duration_s=LEASE_S, clock=clock, **kwargs
        )

    return make
