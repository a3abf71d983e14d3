"""The figures table of a finished run: one row per figure, one column per policy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HIGHER = "higher"
LOWER = "lower"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    better: str
    digits: int
    # True for a fraction shown as a percentage: 0.97 as 97.00.
    percent: bool = False


FIGURES = (
    Figure("goodput_rps", "Goodput", "requests/s", HIGHER, 3),
    Figure("goodput_tokens_per_s", "Goodput", "output tokens/s", HIGHER, 1),
    Figure("slo_attainment", "SLO attainment", "%", HIGHER, 2, percent=True),
    Figure("failed_requests", "Failed requests", "", LOWER, 0),
    Figure("ttft_p99_s", "TTFT p99", "s", LOWER, 3),
    Figure("itl_p99_s", "ITL p99", "s", LOWER, 4),
    Figure("gpu_hours", "GPU-hours", "h", LOWER, 2),
    Figure("usd", "Cost", "$", LOWER, 2),
    Figure("kwh", "Energy", "kWh", LOWER, 2),
    Figure(
        "kwh_per_1k_good_requests", "Energy per 1,000 good requests", "kWh", LOWER, 3
    ),
    Figure("replica_changes", "Replica changes", "", LOWER, 0),
    Figure("reversals", "Direction reversals", "", LOWER, 0),
)


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    cells: list[Cell]
    # A failure cause: indented under "Failed requests".
    detail: bool = False


def figure_rows(result: Mapping[str, Any] | None, policies: list[str]) -> list[Row]:
    """Return the table rows for `policies`, in that column order.

    The best value of a row is marked on every policy that reaches it. A
    missing or non-numeric figure shows as "n/a" and is never best.
    """
    figures = _policy_figures(result)
    rows: list[Row] = []
    for figure in FIGURES:
        values = [_number(figures.get(name, {}).get(figure.key)) for name in policies]
        rows.append(_row(figure, values))
        if figure.key == "failed_requests":
            rows.extend(_cause_rows(figures, policies))
    return rows


def _policy_figures(result: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not isinstance(result, Mapping):
        return {}
    policies = result.get("policies")
    if not isinstance(policies, Mapping):
        return {}
    return {
        str(name): dict(values)
        for name, values in policies.items()
        if isinstance(values, Mapping)
    }


def _cause_rows(figures: dict[str, dict[str, Any]], policies: list[str]) -> list[Row]:
    causes: list[str] = []
    for name in policies:
        by_cause = figures.get(name, {}).get("failures_by_cause")
        if isinstance(by_cause, Mapping):
            causes.extend(str(cause) for cause in by_cause if cause not in causes)
    rows = []
    for cause in causes:
        figure = Figure(cause, cause.replace("_", " "), "", LOWER, 0)
        values = [
            _number(_mapping(figures.get(name, {}).get("failures_by_cause")).get(cause))
            for name in policies
        ]
        rows.append(_row(figure, values, detail=True))
    return rows


def _row(figure: Figure, values: list[float | None], detail: bool = False) -> Row:
    known = [value for value in values if value is not None]
    best = None
    if known:
        best = max(known) if figure.better == HIGHER else min(known)
    cells = [
        Cell(_format(figure, value), value is not None and value == best)
        for value in values
    ]
    return Row(figure.key, figure.label, figure.unit, cells, detail)


def _format(figure: Figure, value: float | None) -> str:
    if value is None:
        return "n/a"
    if figure.percent:
        return f"{value * 100:.{figure.digits}f}"
    if figure.digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{figure.digits}f}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
