"""Charts with few samples keep a readable time axis and visible points."""

from __future__ import annotations

import datetime as dt

from tests.dashboard.conftest import World
from tests.dashboard.test_charts import chart_layout, chart_traces
from wva_web.control.models import AcceleratorSample
from wva_web.dashboard import charts


def one_sample_variant_chart(world: World) -> str:
    samples = world.alpha.samples.filter(pod="alpha-h100-pod-1")
    decisions = world.alpha.decisions.select_related("cycle")
    return charts.variant_chart(samples, decisions)


def span(axis: dict[str, list[str]]) -> dt.timedelta:
    low, high = (dt.datetime.fromisoformat(value) for value in axis["range"])
    return high - low


def test_variant_axis_labels_hours_minutes(world: World) -> None:
    layout = chart_layout(one_sample_variant_chart(world))
    assert layout["xaxis"]["tickformat"] == "%H:%M"
    assert layout["xaxis2"]["tickformat"] == "%H:%M"


def test_one_sample_axis_spans_ten_minutes(world: World) -> None:
    layout = chart_layout(one_sample_variant_chart(world))
    assert span(layout["xaxis"]) == charts.MIN_TIME_SPAN


def test_one_decision_draws_markers(world: World) -> None:
    traces = chart_traces(one_sample_variant_chart(world))
    counts = [t for t in traces if t["legend"] == "legend2"]
    assert len(counts) == 4
    for trace in counts:
        assert "markers" in trace["mode"]


def test_accelerator_axis_labels_hours_minutes(world: World) -> None:
    samples = AcceleratorSample.objects.select_related("accelerator")
    layout = chart_layout(charts.accelerator_chart(samples))
    assert layout["xaxis4"]["tickformat"] == "%H:%M"
    assert span(layout["xaxis4"]) == charts.MIN_TIME_SPAN


def test_long_span_keeps_data_range() -> None:
    start = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
    axis = charts.time_axis([start, start + dt.timedelta(hours=1)])
    assert "range" not in axis
    assert axis["tickformat"] == "%H:%M"
