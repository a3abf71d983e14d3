"""Arrival-rate forecast: least-squares trend over a window, projected ahead."""

from __future__ import annotations

import math
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.forecast import (
    forecast_arrival_rate,
    gateway_counts_all,
    smoothed_arrival_rate,
)

PROFILE = settings(derandomize=True, max_examples=300, deadline=None, database=None)


def test_flat_history_forecasts_same_rate() -> None:
    # Given ten cycles at 12 requests/s.
    history = [(30.0 * i, 12.0) for i in range(10)]
    # When the rate is projected 120 s past the last cycle.
    result = forecast_arrival_rate(history, now_s=270.0, horizon_s=120.0)
    # Then the forecast is the observed rate and the trend is flat.
    assert result.rate == pytest.approx(12.0)
    assert result.observed == 12.0
    assert result.trend_per_s == pytest.approx(0.0)
    assert result.points == 10


def test_ramp_projects_one_horizon_ahead() -> None:
    # Given a rate rising by 1 request/s every 30 s, now at 9 requests/s.
    history = [(30.0 * i, float(i)) for i in range(10)]
    # When it is projected 120 s ahead.
    result = forecast_arrival_rate(history, now_s=270.0, horizon_s=120.0)
    # Then the line gives 13 requests/s and the trend 1/30 per second.
    assert result.trend_per_s == pytest.approx(1.0 / 30.0)
    assert result.projected == pytest.approx(13.0)
    assert result.rate == pytest.approx(13.0)
    assert result.observed == 9.0


def test_falling_ramp_keeps_observed_rate() -> None:
    # Given a rate falling from 9 to 0 requests/s.
    history = [(30.0 * i, float(9 - i)) for i in range(10)]
    # When it is projected 120 s ahead.
    result = forecast_arrival_rate(history, now_s=270.0, horizon_s=120.0)
    # Then the projection is clipped at 0 and the rate stays at the observation.
    assert result.trend_per_s < 0
    assert result.projected == 0.0
    assert result.rate == 0.0


def test_noisy_flat_stays_near_mean() -> None:
    # Given 20 requests/s with seeded noise of 2 requests/s.
    rng = random.Random(7)
    history = [(30.0 * i, 20.0 + rng.gauss(0.0, 2.0)) for i in range(10)]
    # When it is projected 120 s ahead.
    result = forecast_arrival_rate(history, now_s=270.0, horizon_s=120.0)
    # Then the forecast stays within a few requests/s of the true rate.
    assert 17.0 <= result.rate <= 26.0
    assert result.rate >= result.observed
    assert abs(result.trend_per_s) < 0.05


def test_single_point_has_no_trend() -> None:
    # Given one observation.
    result = forecast_arrival_rate([(100.0, 4.5)], now_s=100.0, horizon_s=120.0)
    # Then the forecast is that observation with no trend.
    assert result.rate == 4.5
    assert result.trend_per_s == 0.0
    assert result.points == 1


def test_two_points_have_no_trend() -> None:
    # Given two observations, which any line fits exactly.
    history = [(0.0, 1.0), (30.0, 5.0)]
    result = forecast_arrival_rate(history, now_s=30.0, horizon_s=120.0)
    # Then no trend is drawn from them.
    assert result.rate == 5.0
    assert result.trend_per_s == 0.0


def test_window_drops_old_points() -> None:
    # Given a spike long ago and a flat rate in the last 300 s.
    history = [(0.0, 500.0)] + [(1000.0 + 30.0 * i, 3.0) for i in range(5)]
    # When the forecast runs with the default 300 s window.
    result = forecast_arrival_rate(history, now_s=1120.0, horizon_s=120.0)
    # Then the spike is ignored.
    assert result.points == 5
    assert result.rate == pytest.approx(3.0)


def test_zero_horizon_is_fit_at_now() -> None:
    # Given a ramp and no start-up delay.
    history = [(30.0 * i, float(i)) for i in range(5)]
    result = forecast_arrival_rate(history, now_s=120.0, horizon_s=0.0)
    # Then the forecast is the observed rate.
    assert result.rate == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("history", "now_s", "horizon_s", "message"),
    [
        ([(0.0, -1.0)], 0.0, 60.0, "history[0] rate: must be >= 0.0, got -1.0"),
        ([(0.0, math.nan)], 0.0, 60.0, "history[0] rate: must be finite, got nan"),
        ([(10.0, 1.0)], 0.0, 60.0, "history[0] time: 10.0 is after now_s 0.0"),
        ([(0.0, 1.0)], 0.0, -5.0, "horizon_s: must be >= 0.0, got -5.0"),
        ([(0.0, 1.0)], math.inf, 5.0, "now_s: must be finite, got inf"),
        ([], 0.0, 60.0, "history: no point within window_s=300.0"),
        ([(0.0, 1.0)], 900.0, 60.0, "history: no point within window_s=300.0"),
    ],
)
def test_invalid_input_names_value(
    history: list[tuple[float, float]], now_s: float, horizon_s: float, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        forecast_arrival_rate(history, now_s=now_s, horizon_s=horizon_s)


rates = st.floats(0.0, 1000.0, allow_nan=False, allow_infinity=False)
histories = st.lists(rates, min_size=1, max_size=12)


@PROFILE
@given(values=histories, raise_by=st.floats(0.0, 500.0), horizon=st.floats(0, 600))
def test_more_recent_demand_never_lowers_forecast(
    values: list[float], raise_by: float, horizon: float
) -> None:
    # Given a history of one point per 30 s ending now.
    now_s = 30.0 * (len(values) - 1)
    history = [(30.0 * i, rate) for i, rate in enumerate(values)]
    raised = [*history[:-1], (now_s, values[-1] + raise_by)]
    # When the most recent observation is higher.
    before = forecast_arrival_rate(history, now_s=now_s, horizon_s=horizon)
    after = forecast_arrival_rate(raised, now_s=now_s, horizon_s=horizon)
    # Then the forecast is not lower.
    assert after.rate >= before.rate - 1e-9 * max(1.0, before.rate)


@PROFILE
@given(values=histories, horizon=st.floats(0, 600))
def test_forecast_never_below_observed(values: list[float], horizon: float) -> None:
    now_s = 30.0 * (len(values) - 1)
    history = [(30.0 * i, rate) for i, rate in enumerate(values)]
    result = forecast_arrival_rate(history, now_s=now_s, horizon_s=horizon)
    assert result.rate >= result.observed
    assert result.projected >= 0.0
    assert math.isfinite(result.rate)


def test_huge_rates_do_not_overflow() -> None:
    history = [(30.0 * n, 1e160 * (1 + n + 0.5 * (n % 2))) for n in range(12)]

    sized = smoothed_arrival_rate(history, 330.0, 120.0)

    assert math.isfinite(sized.rate)
    assert sized.rate >= 1e160


@pytest.mark.parametrize(
    ("pod_rate", "gateway_rate", "counts_all"),
    [(100.0, 0.0, False), (100.0, 50.0, False), (100.0, 80.0, True),
     (100.0, 300.0, True), (100.0, None, False), (None, 50.0, False)],
)  # fmt: skip
def test_gateway_coverage_of_pod_rate(
    pod_rate: float | None, gateway_rate: float | None, counts_all: bool
) -> None:
    assert gateway_counts_all(pod_rate, gateway_rate) is counts_all
