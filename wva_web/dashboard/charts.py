"""Plotly figures of the pages, rendered as HTML fragments.

The pages load plotly.js once from `/vendor/plotly.min.js`, so each fragment
is rendered without the library. A missing value is a gap in a line, never 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from wva_web.control.models import AcceleratorSample, Decision, MetricSample

CHART_CONFIG = {"displaylogo": False, "responsive": True}


def to_fragment(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        config=CHART_CONFIG,
    )


def accelerator_chart(samples: Iterable[AcceleratorSample]) -> str:
    """Chart utilisation, power, cost and replicas per accelerator over time."""
    series: dict[str, list[AcceleratorSample]] = defaultdict(list)
    for sample in samples:
        series[sample.accelerator.name].append(sample)
    if not series:
        return ""
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        subplot_titles=(
            "KV-cache utilisation (%)",
            "Power (W)",
            "Cost (USD/h)",
            "Replicas",
        ),
    )
    for row, field in enumerate(
        ("utilisation", "power_w", "usd_per_hour", "replicas"), 1
    ):
        for name, points in sorted(series.items()):
            values = [getattr(p, field) for p in points]
            if field == "utilisation":
                values = [None if v is None else round(v * 100, 1) for v in values]
            fig.add_trace(
                go.Scatter(
                    x=[p.at for p in points],
                    y=values,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    connectgaps=False,
                ),
                row=row,
                col=1,
            )
    fig.update_layout(height=760, margin={"l": 50, "r": 20, "t": 40, "b": 30})
    return to_fragment(fig, "chart-accelerators")


def variant_chart(
    samples: Iterable[MetricSample], decisions: Iterable[Decision]
) -> str:
    """Chart KV-cache usage per replica and the replica counts over time."""
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
        vertical_spacing=0.08,
        subplot_titles=("KV-cache usage per replica (%)", "Replicas"),
    )
    for pod, points in sorted(per_pod.items()):
        fig.add_trace(
            go.Scatter(
                x=[p.sampled_at for p in points],
                y=[
                    None if p.kv_cache_usage is None else p.kv_cache_usage * 100
                    for p in points
                ],
                mode="lines+markers",
                name=pod,
                connectgaps=False,
            ),
            row=1,
            col=1,
        )
    times = [d.cycle.started_at for d in decisions]
    for label, values in (
        ("current", [d.current_replicas for d in decisions]),
        ("ready", [d.ready_replicas for d in decisions]),
        ("target", [d.target_replicas for d in decisions]),
        ("HPA would set", [d.hpa_target_replicas for d in decisions]),
    ):
        fig.add_trace(
            go.Scatter(
                x=times,
                y=values,
                mode="lines",
                line_shape="hv",
                name=label,
                connectgaps=False,
            ),
            row=2,
            col=1,
        )
    fig.update_layout(height=520, margin={"l": 50, "r": 20, "t": 40, "b": 30})
    return to_fragment(fig, "chart-variant")
