"""Plotly figures of the pages, rendered as HTML fragments.

The pages load plotly.js once from `/vendor/plotly.min.js`, so each fragment
is rendered without the library. A missing value is a gap in a line, never 0.
Each accelerator keeps one colour in every chart and on its overview card.
"""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from wva_web.control.models import AcceleratorSample, Decision, MetricSample

CHART_CONFIG = {"displaylogo": False, "responsive": True}

# Colours of the accelerators of the demo fleet and the price list, fixed so
# that a name has the same colour on every page and after every restart.
ACCELERATOR_COLOURS = {
    "H100-80GB": "#1f77b4",
    "H200": "#9467bd",
    "A100-80GB": "#ff7f0e",
    "A100-40GB": "#bcbd22",
    "L40S": "#2ca02c",
    "L4": "#d62728",
}
# Other names get one of these by a CRC-32 of the name, so two unlisted
# accelerators may share a colour.
EXTRA_COLOURS = (
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
)
# Pods of one variant: a palette without the accelerator colours' main hues.
POD_COLOURS = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
    "#eeca3b",
)
# Replica-count series of the variant chart: colour and dash per series.
COUNT_STYLES = {
    "current": ("#1d2330", "solid"),
    "ready": ("#2ca02c", "dot"),
    "target": ("#2457a6", "dash"),
    "HPA would set": ("#d62728", "dashdot"),
}
ACCELERATOR_FIELDS = (
    ("utilisation", "KV-cache utilisation (%)"),
    ("power_w", "Power (W)"),
    ("usd_per_hour", "Cost (USD/h)"),
    ("replicas", "Replicas"),
)


def accelerator_colour(name: str) -> str:
    """Return the fixed colour of an accelerator, e.g. "#1f77b4" for H100-80GB."""
    colour = ACCELERATOR_COLOURS.get(name)
    if colour is not None:
        return colour
    return EXTRA_COLOURS[zlib.crc32(name.encode()) % len(EXTRA_COLOURS)]


def count_axis(values: Iterable[int | None]) -> dict[str, Any]:
    """Return y-axis settings for replica counts: whole numbers, about 5 ticks."""
    top = max((v for v in values if v is not None), default=0)
    return {"rangemode": "tozero", "tick0": 0, "dtick": max(1, math.ceil(top / 5))}


# A time axis spans at least this long, so one sample does not stretch it to
# sub-second ticks.
MIN_TIME_SPAN = dt.timedelta(minutes=10)


def time_axis(times: Iterable[dt.datetime]) -> dict[str, Any]:
    """Return x-axis settings that label times as HH:MM.

    When the samples span less than MIN_TIME_SPAN, the range is MIN_TIME_SPAN
    wide and centred on them. Otherwise Plotly sets the range from the data.
    """
    axis: dict[str, Any] = {"tickformat": "%H:%M", "hoverformat": "%H:%M:%S"}
    known = [t for t in times if t is not None]
    if not known:
        return axis
    first, last = min(known), max(known)
    if last - first < MIN_TIME_SPAN:
        middle = first + (last - first) / 2
        axis["range"] = [middle - MIN_TIME_SPAN / 2, middle + MIN_TIME_SPAN / 2]
    return axis


def to_fragment(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        config=CHART_CONFIG,
    )


def field_values(points: list[AcceleratorSample], field: str) -> list[Any]:
    values = [getattr(p, field) for p in points]
    if field == "utilisation":
        return [None if v is None else round(v * 100, 1) for v in values]
    return values


def accelerator_chart(samples: Iterable[AcceleratorSample]) -> str:
    """Chart utilisation, power, cost and replicas per accelerator over time.

    One legend above the four panels names every accelerator; clicking an
    entry hides or shows that accelerator in all four panels.
    """
    series: dict[str, list[AcceleratorSample]] = defaultdict(list)
    for sample in samples:
        series[sample.accelerator.name].append(sample)
    if not series:
        return ""
    fig = make_subplots(
        rows=len(ACCELERATOR_FIELDS),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=[title for _, title in ACCELERATOR_FIELDS],
    )
    for row, (field, _) in enumerate(ACCELERATOR_FIELDS, 1):
        for name, points in sorted(series.items()):
            colour = accelerator_colour(name)
            fig.add_trace(
                go.Scatter(
                    x=[p.at for p in points],
                    y=field_values(points, field),
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    line={"color": colour, "width": 2},
                    marker={"color": colour, "size": 5},
                    connectgaps=False,
                ),
                row=row,
                col=1,
            )
    fig.update_xaxes(time_axis(p.at for points in series.values() for p in points))
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(range=[0, 100], row=1, col=1)
    replicas = [p.replicas for points in series.values() for p in points]
    fig.update_yaxes(count_axis(replicas), row=len(ACCELERATOR_FIELDS), col=1)
    fig.update_layout(
        height=820,
        margin={"l": 60, "r": 20, "t": 70, "b": 30},
        legend={
            "title": {"text": "Accelerator "},
            "orientation": "h",
            "x": 0,
            "xanchor": "left",
            "y": 1.03,
            "yanchor": "bottom",
        },
        hovermode="x unified",
    )
    # Move the panel titles left so the legend above the first one stays clear.
    fig.update_annotations(x=0, xanchor="left", font={"size": 13})
    return to_fragment(fig, "chart-accelerators")


def variant_chart(
    samples: Iterable[MetricSample], decisions: Iterable[Decision]
) -> str:
    """Chart KV-cache usage per replica and the replica counts over time.

    Each panel has its own legend beside it: pods beside the KV-cache panel,
    the replica-count series beside the replica panel.
    """
    per_pod: dict[str, list[MetricSample]] = defaultdict(list)
    for sample in samples:
        per_pod[sample.pod].append(sample)
    decisions = list(decisions)
    if not per_pod and not decisions:
        return ""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=("KV-cache usage per replica (%)", "Replicas"),
    )
    add_pod_traces(fig, per_pod)
    add_count_traces(fig, decisions)
    times = [p.sampled_at for points in per_pod.values() for p in points]
    times += [d.cycle.started_at for d in decisions]
    fig.update_xaxes(time_axis(times))
    fig.update_yaxes(range=[0, 100], row=1, col=1)
    counts = [
        value
        for d in decisions
        for value in (d.current_replicas, d.target_replicas, d.hpa_target_replicas)
    ]
    fig.update_yaxes(count_axis(counts), row=2, col=1)
    fig.update_layout(
        showlegend=True,
        height=560,
        margin={"l": 60, "r": 20, "t": 40, "b": 30},
        legend={"title": {"text": "Pod"}, "y": 1.0, "yanchor": "top"},
        legend2={"title": {"text": "Replicas"}, "y": 0.44, "yanchor": "top"},
    )
    return to_fragment(fig, "chart-variant")


def add_pod_traces(fig: go.Figure, per_pod: dict[str, list[MetricSample]]) -> None:
    for index, (pod, points) in enumerate(sorted(per_pod.items())):
        colour = POD_COLOURS[index % len(POD_COLOURS)]
        fig.add_trace(
            go.Scatter(
                x=[p.sampled_at for p in points],
                y=[
                    None if p.kv_cache_usage is None else p.kv_cache_usage * 100
                    for p in points
                ],
                mode="lines+markers",
                name=pod,
                legend="legend",
                line={"color": colour},
                marker={"color": colour, "size": 5},
                connectgaps=False,
            ),
            row=1,
            col=1,
        )


def add_count_traces(fig: go.Figure, decisions: list[Decision]) -> None:
    times = [d.cycle.started_at for d in decisions]
    for label, values in (
        ("current", [d.current_replicas for d in decisions]),
        ("ready", [d.ready_replicas for d in decisions]),
        ("target", [d.target_replicas for d in decisions]),
        ("HPA would set", [d.hpa_target_replicas for d in decisions]),
    ):
        colour, dash = COUNT_STYLES[label]
        fig.add_trace(
            go.Scatter(
                x=times,
                y=values,
                # Markers show a count with no neighbour to draw a line to,
                # such as the first cycle's.
                mode="lines+markers",
                line={"color": colour, "dash": dash, "shape": "hv"},
                marker={"color": colour, "size": 5},
                name=label,
                legend="legend2",
                connectgaps=False,
            ),
            row=2,
            col=1,
        )
