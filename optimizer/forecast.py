"""Short-term forecast of a model's arrival rate.

A new replica serves only after its start-up delay, so a scale-up sized
for the rate observed now lands too late on a rising load. The forecast
fits a least-squares line to the observations of the last `window_s`
seconds and projects it `horizon_s` ahead, usually the start-up delay.

The rate to size for is never below the latest observation, so a falling
trend never lowers a sizing (the forecast never causes a scale-down), and
it is never negative. With fewer than MIN_TREND_POINTS observations in the
window there is no trend and the forecast is the observed rate.

`smoothed_arrival_rate` is the rate the `wva` policy sizes for. It
averages a noisy rate (completions plus queue growth), projects only a
significant rise, and keeps the recent peak, so that a scale-down waits
until demand has stayed low for a whole hold window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Two points always fit a line exactly, so one noisy cycle would set the
# trend: at least three are needed.
MIN_TREND_POINTS = 3

# A rising trend must be this many standard errors above zero before the
# smoothed rate is projected: about the 95% one-sided level for 10 points.
TREND_MIN_T = 2.0


@dataclass(frozen=True)
class Forecast:
    """Arrival rates in requests/s and the fitted trend.

    `rate` is max(`observed`, `projected`), the rate to size for.
    `observed` is the latest observation, `projected` the trend line at
    `now_s + horizon_s` (at least 0), `trend_per_s` the slope in requests/s
    per second (0 without a trend) and `points` the observations used.
    """

    rate: float
    observed: float
    projected: float
    trend_per_s: float
    points: int
    horizon_s: float


def _check_number(name: str, value: float, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value!r}")
    return float(value)


def _window_points(
    history: Sequence[tuple[float, float]], now_s: float, window_s: float
) -> list[tuple[float, float]]:
    """Check every point and return those inside the window, oldest first."""
    points: list[tuple[float, float]] = []
    for index, item in enumerate(history):
        if len(item) != 2:
            raise ValueError(f"history[{index}]: must be (time_s, rate), got {item!r}")
        at_s = _check_number(f"history[{index}] time", item[0])
        rate = _check_number(f"history[{index}] rate", item[1], minimum=0.0)
        if at_s > now_s:
            raise ValueError(
                f"history[{index}] time: {at_s!r} is after now_s {now_s!r}"
            )
        if now_s - at_s <= window_s:
            points.append((at_s, rate))
    points.sort(key=lambda point: point[0])
    return points


def _trend_line(
    points: Sequence[tuple[float, float]],
) -> tuple[float, float, float] | None:
    """Return the least-squares slope, mean time and mean rate, or None."""
    count = len(points)
    if count < MIN_TREND_POINTS:
        return None
    mean_t = math.fsum(t for t, _ in points) / count
    mean_r = math.fsum(r for _, r in points) / count
    spread = math.fsum((t - mean_t) ** 2 for t, _ in points)
    if spread <= 0.0:
        return None
    covariance = math.fsum((t - mean_t) * (r - mean_r) for t, r in points)
    return covariance / spread, mean_t, mean_r


def forecast_arrival_rate(
    history: Sequence[tuple[float, float]],
    now_s: float,
    horizon_s: float,
    window_s: float = 300.0,
) -> Forecast:
    """Project the arrival rate `horizon_s` seconds past `now_s`.

    `history` contains (time in seconds, requests/s) pairs in any order;
    points older than `window_s` are ignored. Raises ValueError naming the
    value when a time or rate is not finite, a rate is negative, a time is
    after `now_s`, or no point lies within the window.
    """
    now_s = _check_number("now_s", now_s)
    horizon_s = _check_number("horizon_s", horizon_s, minimum=0.0)
    window_s = _check_number("window_s", window_s)
    if window_s <= 0:
        raise ValueError(f"window_s: must be > 0, got {window_s!r}")
    points = _window_points(history, now_s, window_s)
    if not points:
        raise ValueError(
            f"history: no point within window_s={window_s!r} before now_s={now_s!r}"
        )
    observed = points[-1][1]
    line = _trend_line(points)
    slope, projected = 0.0, observed
    if line is not None:
        slope, mean_t, mean_r = line
        projected = max(0.0, mean_r + slope * (now_s + horizon_s - mean_t))
    return Forecast(
        rate=max(observed, projected),
        observed=observed,
        projected=projected,
        trend_per_s=slope,
        points=len(points),
        horizon_s=horizon_s,
    )


@dataclass(frozen=True)
class SmoothedDemand:
    """The arrival rate to size for, built from a noisy rate history.

    `rate` is max(`forecast.rate`, the highest EWMA of the hold window) in
    requests/s. `smoothed` is the latest exponentially weighted moving
    average (EWMA) of the observations. `forecast` is the projection of the
    observations when they rise significantly, else the EWMA level.
    """

    rate: float
    smoothed: float
    forecast: Forecast


def _ewma_points(
    points: Sequence[tuple[float, float]], time_constant_s: float
) -> list[tuple[float, float]]:
    """Return the EWMA of time-ordered points, weighting each by its time step."""
    smoothed: list[tuple[float, float]] = []
    level = points[0][1]
    previous_s = points[0][0]
    for at_s, rate in points:
        weight = 1.0 - math.exp(-(at_s - previous_s) / time_constant_s)
        level += weight * (rate - level)
        smoothed.append((at_s, level))
        previous_s = at_s
    return smoothed


def smoothed_arrival_rate(
    history: Sequence[tuple[float, float]],
    now_s: float,
    horizon_s: float,
    time_constant_s: float = 60.0,
    hold_s: float = 300.0,
    window_s: float = 300.0,
) -> SmoothedDemand:
    """Smooth the arrival rate, project its trend and hold the recent peak.

    The observations are averaged by an EWMA with `time_constant_s`, so a
    swing that lasts one control period moves the rate by only part of its
    size. When the observations of the last `window_s` seconds rise
    significantly, their trend is projected `horizon_s` ahead as in
    `forecast_arrival_rate`, so a sustained rise raises the rate before it
    arrives while noise does not. The rate never falls below the highest
    EWMA of the last `hold_s` seconds: it comes down, and with it a sizing,
    only after demand stayed low for the whole hold window.

    Raises ValueError naming the value on invalid input, as
    `forecast_arrival_rate` does, or when `time_constant_s` is not > 0 or
    `hold_s` is negative.
    """
    now_s = _check_number("now_s", now_s)
    horizon_s = _check_number("horizon_s", horizon_s, minimum=0.0)
    time_constant_s = _check_number("time_constant_s", time_constant_s)
    if time_constant_s <= 0:
        raise ValueError(f"time_constant_s: must be > 0, got {time_constant_s!r}")
    hold_s = _check_number("hold_s", hold_s, minimum=0.0)
    window_s = _check_number("window_s", window_s)
    if window_s <= 0:
        raise ValueError(f"window_s: must be > 0, got {window_s!r}")
    # The EWMA starts at the oldest point given, so its level does not
    # depend on where the trend window begins.
    points = _window_points(history, now_s, math.inf)
    if not points:
        raise ValueError("history: must contain at least one (time_s, rate) point")
    smoothed = _ewma_points(points, time_constant_s)
    latest = _sized_at(points, smoothed, len(points), horizon_s, window_s)
    recent = [level for at_s, level in smoothed if now_s - at_s <= hold_s]
    held = max(recent, default=smoothed[-1][1])
    return SmoothedDemand(
        rate=max(latest.rate, held), smoothed=smoothed[-1][1], forecast=latest
    )


def _sized_at(
    points: Sequence[tuple[float, float]],
    smoothed: Sequence[tuple[float, float]],
    count: int,
    horizon_s: float,
    window_s: float,
) -> Forecast:
    """Forecast the rate at points[count - 1]: the EWMA, or a significant rise.

    When the raw observations in the window rise with a t-statistic of at
    least TREND_MIN_T, their own trend is projected as in
    `forecast_arrival_rate`, so a real ramp is followed without the lag of
    the EWMA. A slope that noise alone could produce is dropped, and the
    forecast is the EWMA level.
    """
    now_s = points[count - 1][0]
    level = smoothed[count - 1][1]
    raw = _window_points(points[:count], now_s, window_s)
    forecast = forecast_arrival_rate(raw, now_s, horizon_s, window_s)
    if _rising_t(raw) >= TREND_MIN_T:
        return dataclasses.replace(forecast, rate=max(forecast.rate, level))
    return dataclasses.replace(forecast, rate=level, projected=level, trend_per_s=0.0)


def _rising_t(points: Sequence[tuple[float, float]]) -> float:
    """Return the t-statistic of the least-squares slope, 0 without a trend."""
    line = _trend_line(points)
    if line is None or len(points) < MIN_TREND_POINTS:
        return 0.0
    slope, mean_t, mean_r = line
    # Rates are scaled to their largest value, so squares of rates near the
    # float limit do not overflow. The t-statistic does not change.
    scale = max((abs(r) for _, r in points), default=0.0) or 1.0
    slope /= scale
    mean_r /= scale
    spread = math.fsum((t - mean_t) ** 2 for t, _ in points)
    residual = math.fsum(
        (r / scale - mean_r - slope * (t - mean_t)) ** 2 for t, r in points
    )
    if residual <= 0.0:
        return math.inf if slope > 0 else 0.0
    error = math.sqrt(residual / (len(points) - 2) / spread)
    return slope / error


# Share of the replicas' arrival rate that the gateway must count to cover
# the model's whole traffic. The replicas' rate spans one control period and
# the gateway's one minute, so the gateway's is lower at the start of a
# burst. A gateway that counts half the traffic fails the check.
GATEWAY_COVERAGE = 0.75


def gateway_counts_all(pod_rate: float | None, gateway_rate: float | None) -> bool:
    """Tell whether the gateway's request rate covers the model's whole traffic.

    When it does, the demand includes the requests the gateway rejected
    (`includes_rejected`), so `wva` needs no growth rule for a saturated
    model.
    """
    if pod_rate is None or gateway_rate is None:
        return False
    return gateway_rate >= GATEWAY_COVERAGE * pod_rate
