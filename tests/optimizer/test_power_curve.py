"""Power per replica and per fleet."""

from __future__ import annotations

import math

import pytest

from optimizer.power import (
    FleetReplica,
    PowerCurve,
    energy_kwh,
    fleet_power_w,
    fleet_usd_per_hour,
    gpu_power_w,
    replica_power_w,
)

H100 = PowerCurve(idle_w=200.0, mid_w=600.0, full_w=700.0)
L40S = PowerCurve(idle_w=100.0, mid_w=250.0, full_w=300.0)


@pytest.mark.parametrize(
    ("utilisation", "watts"),
    [(0.0, 200.0), (0.3, 400.0), (0.6, 600.0), (0.8, 650.0), (1.0, 700.0)],
)
def test_gpu_power_piecewise_linear(utilisation: float, watts: float) -> None:
    assert gpu_power_w(H100, utilisation) == pytest.approx(watts)


def test_utilisation_clipped_to_range() -> None:
    assert gpu_power_w(H100, 1.5) == 700.0
    assert gpu_power_w(H100, -0.2) == 200.0


def test_non_finite_utilisation_raises() -> None:
    with pytest.raises(ValueError, match="utilisation"):
        gpu_power_w(H100, math.nan)


def test_starting_replica_draws_idle() -> None:
    assert replica_power_w(H100, 0.9, starting=True) == 200.0


def test_replica_power_scales_with_gpus() -> None:
    assert replica_power_w(H100, 1.0, gpus_per_replica=2) == 1400.0


def test_fleet_power_and_cost() -> None:
    # Given two L40S replicas and one starting H100 replica with 2 GPUs
    fleet = [
        FleetReplica(L40S, 1.86, utilisation=0.6),
        FleetReplica(L40S, 1.86, utilisation=0.0),
        FleetReplica(H100, 12.29, gpus_per_replica=2, utilisation=0.9, starting=True),
    ]
    # Then power is 250 + 100 + 2 * 200 W and cost 2 * 1.86 + 2 * 12.29 USD/h
    assert fleet_power_w(fleet) == pytest.approx(750.0)
    assert fleet_usd_per_hour(fleet) == pytest.approx(28.30)


def test_energy_of_one_kw_hour() -> None:
    assert energy_kwh(1000.0, 3600.0) == pytest.approx(1.0)


def test_curve_rejects_negative_power() -> None:
    with pytest.raises(ValueError, match="idle_w"):
        PowerCurve(idle_w=-1.0, mid_w=1.0, full_w=2.0)
