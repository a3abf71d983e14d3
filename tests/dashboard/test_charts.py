"""Plotly fragments: no embedded library, gaps for missing values."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tests.dashboard.conftest import World, make_cycle, make_sample
from wva_web.control.models import AcceleratorSample, SampleStatus
from wva_web.dashboard import charts


def test_accelerator_chart_has_no_library(world: World) -> None:
    html = charts.accelerator_chart(
        AcceleratorSample.objects.select_related("accelerator")
    )
    assert 'id="chart-accelerators"' in html
    assert "Licensed under the MIT license" not in html


def test_accelerator_chart_empty_without_samples() -> None:
    assert charts.accelerator_chart([]) == ""


def test_variant_chart_keeps_missing_kv_as_gap(world: World) -> None:
    # given a later cycle in which pod-1 has no KV-cache sample
    later = make_cycle(world.cycle.started_at + dt.timedelta(seconds=30))
    make_sample(
        later, world.alpha, "alpha-h100-pod-1", None, None, SampleStatus.MISSING
    )
    samples = world.alpha.samples.filter(pod="alpha-h100-pod-1").order_by("sampled_at")
    # when
    html = charts.variant_chart(samples, [])
    # then the second point is null, not 0
    assert '"y":[40.0,null]' in html.replace(" ", "")


def chart_traces(html: str) -> list[dict[str, Any]]:
    """Return the traces of a rendered fragment, parsed from its Plotly.newPlot call."""
    start = html.index("Plotly.newPlot(")
    args = html[start + len("Plotly.newPlot(") :]
    traces_start = args.index("[")
    decoder = json.JSONDecoder()
    traces, _ = decoder.raw_decode(args[traces_start:])
    return traces


def chart_layout(html: str) -> dict[str, Any]:
    start = html.index("Plotly.newPlot(")
    args = html[start + len("Plotly.newPlot(") :]
    decoder = json.JSONDecoder()
    traces_start = args.index("[")
    _, end = decoder.raw_decode(args[traces_start:])
    rest = args[traces_start + end :].lstrip(", ")
    layout, _ = decoder.raw_decode(rest)
    return layout


def add_l40s_sample(world: World) -> None:
    AcceleratorSample.objects.create(
        cycle=world.cycle,
        accelerator=world.l40s,
        at=world.cycle.started_at,
        replicas=2,
        ready_replicas=2,
        gpus_used=2,
        utilisation=0.325,
        power_w=400.0,
        usd_per_hour=4.0,
    )


def test_accelerator_colour_fixed_by_name() -> None:
    assert charts.accelerator_colour("H100-80GB") == "#1f77b4"
    assert charts.accelerator_colour("L4") == "#d62728"


def test_unlisted_accelerator_colour_stable() -> None:
    first = charts.accelerator_colour("MI300X")
    assert first == charts.accelerator_colour("MI300X")
    assert first in charts.EXTRA_COLOURS


def test_accelerator_keeps_colour_in_every_panel(world: World) -> None:
    # given samples of two accelerators
    add_l40s_sample(world)
    samples = AcceleratorSample.objects.select_related("accelerator")
    # when
    traces = chart_traces(charts.accelerator_chart(samples))
    # then each accelerator has 4 traces (one per panel), all in its colour
    colours: dict[str, set[str]] = {}
    for trace in traces:
        colours.setdefault(trace["name"], set()).add(trace["line"]["color"])
    assert colours == {"H100-80GB": {"#1f77b4"}, "L40S": {"#2ca02c"}}
    assert len(traces) == 8


def test_accelerator_colour_independent_of_other_series(world: World) -> None:
    # given only the L40S sample, which sorts first when H100 is absent
    AcceleratorSample.objects.all().delete()
    add_l40s_sample(world)
    samples = AcceleratorSample.objects.select_related("accelerator")
    # when
    traces = chart_traces(charts.accelerator_chart(samples))
    # then L40S keeps its own colour instead of taking the first palette slot
    assert {t["line"]["color"] for t in traces} == {"#2ca02c"}


def test_accelerator_chart_shows_one_legend_entry_each(world: World) -> None:
    add_l40s_sample(world)
    samples = AcceleratorSample.objects.select_related("accelerator")
    html = charts.accelerator_chart(samples)
    shown = [t["name"] for t in chart_traces(html) if t.get("showlegend", True)]
    assert shown == ["H100-80GB", "L40S"]
    assert chart_layout(html)["legend"]["orientation"] == "h"


def test_variant_chart_has_legend_per_panel(world: World) -> None:
    # given one pod and the cycle's decision
    samples = world.alpha.samples.filter(pod="alpha-h100-pod-1")
    decisions = world.alpha.decisions.select_related("cycle")
    # when
    html = charts.variant_chart(samples, decisions)
    traces = chart_traces(html)
    layout = chart_layout(html)
    # then pods use the first legend and the replica counts the second
    assert [t["legend"] for t in traces] == ["legend"] + ["legend2"] * 4
    assert layout["showlegend"] is True
    assert layout["legend2"]["title"]["text"] == "Replicas"


def test_replica_axis_ticks_are_whole(world: World) -> None:
    samples = AcceleratorSample.objects.select_related("accelerator")
    layout = chart_layout(charts.accelerator_chart(samples))
    assert layout["yaxis4"]["dtick"] == 1
