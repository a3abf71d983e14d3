"""Power per replica and per fleet, and fleet cost per hour."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PowerCurve:
    """Power of one GPU in watts at idle, at `mid_utilisation` and at full load."""

    idle_w: float
    mid_w: float
    full_w: float
    mid_utilisation: float = 0.6

    def __post_init__(self) -> None:
        for name in ("idle_w", "mid_w", "full_w"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be finite and >= 0, got {value!r}")
        if not 0.0 < self.mid_utilisation < 1.0:
            raise ValueError(
                "mid_utilisation: must be between 0 and 1, "
                f"got {self.mid_utilisation!r}"
            )


@dataclass(frozen=True)
class FleetReplica:
    """One replica of a fleet: its GPUs' curve and price, and its utilisation."""

    curve: PowerCurve
    usd_per_gpu_hour: float
    gpus_per_replica: int = 1
    utilisation: float = 0.0
    starting: bool = False


def gpu_power_w(curve: PowerCurve, utilisation: float) -> float:
    """Interpolate one GPU's power: idle to mid up to `mid_utilisation`, then to full.

    Utilisation is clipped to [0, 1], and a non-finite value raises ValueError.
    """
    if not math.isfinite(utilisation):
        raise ValueError(f"utilisation: must be finite, got {utilisation!r}")
    u = min(1.0, max(0.0, utilisation))
    mid = curve.mid_utilisation
    if u <= mid:
        return curve.idle_w + (curve.mid_w - curve.idle_w) * u / mid
    return curve.mid_w + (curve.full_w - curve.mid_w) * (u - mid) / (1.0 - mid)


def replica_power_w(
    curve: PowerCurve,
    utilisation: float,
    gpus_per_replica: int = 1,
    starting: bool = False,
) -> float:
    """Compute one replica's power in watts, with idle power while it starts."""
    if gpus_per_replica < 0:
        raise ValueError(f"gpus_per_replica: must be >= 0, got {gpus_per_replica}")
    per_gpu = curve.idle_w if starting else gpu_power_w(curve, utilisation)
    return per_gpu * gpus_per_replica


def fleet_power_w(replicas: Iterable[FleetReplica]) -> float:
    """Sum the power of every replica, in watts."""
    return math.fsum(
        replica_power_w(r.curve, r.utilisation, r.gpus_per_replica, r.starting)
        for r in replicas
    )


def fleet_usd_per_hour(replicas: Iterable[FleetReplica]) -> float:
    """Sum the GPU cost of every replica, starting ones included, in USD per hour."""
    return math.fsum(r.usd_per_gpu_hour * r.gpus_per_replica for r in replicas)


def energy_kwh(power_w: float, seconds: float) -> float:
    """Convert a constant power over a duration to kWh."""
    return power_w * seconds / 3_600_000.0
