"""The figures table of a finished run: one row per figure, one column per policy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HIGHER = "higher"
LOWER = "lower"
# A GPU-hour, cost or energy row marks its best value only among the policies
# whose SLO attainment, a fraction, is at most this far below the run's
# highest. A policy that fails requests spends less for the wrong reason.
ATTAINMENT_MARGIN = 0.01
# Slack for float rounding, so that 1.0 - 0.99 still counts as within 0.01.
EPSILON = 1e-9


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    better: str
    digits: int
    # True for a fraction shown as a percentage: 0.97 as 97.00.
    percent: bool = False
    # True for a GPU-hour, cost or energy row, whose best value counts only the
    # policies that `attaining_policies` returns.
    resource: bool = False


FIGURES = (
    Figure("goodput_rps", "Goodput", "requests/s", HIGHER, 3),
    Figure("goodput_tokens_per_s", "Goodput", "output tokens/s", HIGHER, 1),
    Figure("slo_attainment", "SLO attainment", "%", HIGHER, 2, percent=True),
    Figure("failed_requests", "Failed requests", "", LOWER, 0),
    Figure("ttft_p99_s", "TTFT p99", "s", LOWER, 3),
    Figure("itl_p99_s", "ITL p99", "s", LOWER, 4),
    Figure("gpu_hours", "GPU-hours", "h", LOWER, 2, resource=True),
    Figure("usd", "Cost", "$", LOWER, 2, resource=True),
    Figure("kwh", "Energy", "kWh", LOWER, 2, resource=True),
    Figure(
        "kwh_per_1k_good_requests",
        "Energy per 1,000 good requests",
        "kWh",
        LOWER,
        3,
        resource=True,
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
    """Build the table rows for `policies`, in that column order.

    The best value of a row, compared as shown after rounding, is marked on
    every policy that reaches it. GPU-hour, cost and energy rows compare only
    the policies that `attaining_policies` returns. A missing or non-numeric
    figure shows as "n/a" and is never best.
    """
    figures = _policy_figures(result)
    attaining = attaining_policies(figures, policies)
    rows: list[Row] = []
    for figure in FIGURES:
        values = [_number(figures.get(name, {}).get(figure.key)) for name in policies]
        eligible = [name in attaining for name in policies] if figure.resource else None
        rows.append(_row(figure, values, eligible))
        if figure.key == "failed_requests":
            rows.extend(_cause_rows(figures, policies))
    return rows


def attaining_policies(
    figures: Mapping[str, Mapping[str, Any]], policies: list[str]
) -> set[str]:
    """Return the policies within ATTAINMENT_MARGIN of the highest SLO attainment.

    A policy without a numeric attainment is left out, so a run in which no
    policy has one returns an empty set.
    """
    attainment = {
        name: _number(figures.get(name, {}).get("slo_attainment")) for name in policies
    }
    known = [value for value in attainment.values() if value is not None]
    if not known:
        return set()
    floor = max(known) - ATTAINMENT_MARGIN - EPSILON
    return {
        name
        for name, value in attainment.items()
        if value is not None and value >= floor
    }


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


def _row(
    figure: Figure,
    values: list[float | None],
    eligible: list[bool] | None = None,
    detail: bool = False,
) -> Row:
    """Build one row. Only a cell whose `eligible` entry is True may be best.

    With `eligible` None, every cell may be best.
    """
    rounded_values = [_rounded(figure, value) for value in values]
    if eligible is None:
        eligible = [True] * len(values)
    candidates = [
        value
        for value, ok in zip(rounded_values, eligible, strict=True)
        if ok and value is not None
    ]
    best = None
    if candidates:
        best = max(candidates) if figure.better == HIGHER else min(candidates)
    cells = [
        Cell(_format(figure, value), ok and value is not None and rounded == best)
        for value, rounded, ok in zip(values, rounded_values, eligible, strict=True)
    ]
    return Row(figure.key, figure.label, figure.unit, cells, detail)


def _rounded(figure: Figure, value: float | None) -> float | None:
    """Return the value as the table shows it, so that equal text compares equal."""
    if value is None:
        return None
    scaled = value * 100 if figure.percent else value
    return float(f"{scaled:.{figure.digits}f}")


def _format(figure: Figure, value: float | None) -> str:
    if value is None:
        return "n/a"
    if figure.percent:
        return f"{value * 100:.{figure.digits}f}"
    return f"{value:,.{figure.digits}f}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
