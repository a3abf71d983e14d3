"""Plotly HTML figures of a `compare` result.

`write_plots(result, directory)` writes `replicas.html` (replicas holding
a GPU, per variant, one panel per policy), `load.html` (arrival rate),
`kv_usage.html` (mean KV-cache usage of ready replicas, per variant and
policy) and `failures.html` (failed requests so far, per policy). Time is
seconds from the end of the warm-up. The HTML loads plotly.js from its CDN
when opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots


def _variants(series: dict[str, Any], prefix: str) -> list[str]:
    return [key.removeprefix(prefix) for key in series if key.startswith(prefix)]


def _panels(result: dict[str, Any], prefix: str, title: str, y_title: str) -> go.Figure:
    policies = list(result["policies"])
    figure = make_subplots(
        rows=len(policies),
        cols=1,
        shared_xaxes=True,
        subplot_titles=policies,
        vertical_spacing=0.04 if len(policies) > 3 else 0.1,
    )
    # One colour per variant in every panel, so the legend of the first panel
    # is true for all of them.
    palette = qualitative.Plotly
    colours: dict[str, str] = {}
    for row, name in enumerate(policies, start=1):
        series = result["policies"][name]["series"]
        for variant in _variants(series, prefix):
            colour = colours.setdefault(variant, palette[len(colours) % len(palette)])
            figure.add_trace(
                go.Scatter(
                    x=series["t"],
                    y=series[prefix + variant],
                    name=variant,
                    legendgroup=variant,
                    showlegend=row == 1,
                    mode="lines",
                    line={"shape": "hv", "color": colour},
                ),
                row=row,
                col=1,
            )
        figure.update_yaxes(title_text=y_title, row=row, col=1)
    figure.update_xaxes(title_text="time (s)", row=len(policies), col=1)
    figure.update_layout(title=title, height=260 * len(policies) + 120)
    return figure


def _load(result: dict[str, Any]) -> go.Figure:
    first = next(iter(result["policies"].values()))["series"]
    figure = go.Figure(
        go.Scatter(x=first["t"], y=first["arrival_rps"], mode="lines", name="arrivals")
    )
    figure.update_layout(
        title=(
            f"Load: {result['trace']} x{result['scale']} ({result['scale_mode']}), "
            "arrivals per 15 s scrape interval"
        ),
        xaxis_title="time (s)",
        yaxis_title="requests/s",
    )
    return figure


def _failures(result: dict[str, Any]) -> go.Figure:
    figure = go.Figure()
    for name, values in result["policies"].items():
        series = values["series"]
        figure.add_trace(
            go.Scatter(x=series["t"], y=series["failures"], mode="lines", name=name)
        )
    figure.update_layout(
        title="Failed requests so far (rejected, timed out, lost to scale-down)",
        xaxis_title="time (s)",
        yaxis_title="requests",
    )
    return figure


def write_plots(result: dict[str, Any], directory: Path) -> list[Path]:
    """Write the four HTML figures into `directory` (created) and return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    figures = {
        "replicas.html": _panels(
            result, "replicas:", "Replicas holding a GPU, per variant", "replicas"
        ),
        "load.html": _load(result),
        "kv_usage.html": _panels(
            result, "kv:", "Mean KV-cache usage of ready replicas", "KV usage"
        ),
        "failures.html": _failures(result),
    }
    paths = []
    for filename, figure in figures.items():
        path = directory / filename
        # "directory" writes plotly.min.js once beside the files, so they open
        # without network access.
        figure.write_html(path, include_plotlyjs="directory")
        paths.append(path)
    return paths
