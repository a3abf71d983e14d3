"""The figures table: ties as shown, and cost rows limited by SLO attainment."""

from __future__ import annotations

from typing import Any

from wva_web.simulate.results import Row, attaining_policies, figure_rows

POLICIES = ["cheap-failing", "good", "also-good"]


def result_of(**figures: dict[str, Any]) -> dict[str, Any]:
    return {"policies": figures}


def row_of(rows: list[Row], key: str) -> Row:
    return next(row for row in rows if row.key == key)


def bold(row: Row) -> list[bool]:
    return [cell.best for cell in row.cells]


def test_ties_after_rounding_all_bold() -> None:
    result = result_of(
        a={"goodput_rps": 1.0001, "ttft_p99_s": 0.5},
        b={"goodput_rps": 1.0004, "ttft_p99_s": 0.5},
        c={"goodput_rps": 0.9, "ttft_p99_s": 0.6},
    )
    rows = figure_rows(result, ["a", "b", "c"])
    goodput = row_of(rows, "goodput_rps")
    assert [cell.text for cell in goodput.cells] == ["1.000", "1.000", "0.900"]
    assert bold(goodput) == [True, True, False]
    assert bold(row_of(rows, "ttft_p99_s")) == [True, True, False]


def test_percent_row_ties_as_shown() -> None:
    result = result_of(
        a={"slo_attainment": 0.99991},
        b={"slo_attainment": 0.99994},
    )
    row = row_of(figure_rows(result, ["a", "b"]), "slo_attainment")
    assert [cell.text for cell in row.cells] == ["99.99", "99.99"]
    assert bold(row) == [True, True]


def test_cost_best_skips_failing_policy() -> None:
    result = result_of(
        **{
            "cheap-failing": {"slo_attainment": 0.40, "usd": 0.10, "kwh": 0.01},
            "good": {"slo_attainment": 0.995, "usd": 0.50, "kwh": 0.05},
            "also-good": {"slo_attainment": 1.0, "usd": 0.60, "kwh": 0.05},
        }
    )
    rows = figure_rows(result, POLICIES)
    assert bold(row_of(rows, "usd")) == [False, True, False]
    assert bold(row_of(rows, "kwh")) == [False, True, True]


def test_every_resource_row_gated() -> None:
    keys = ["gpu_hours", "usd", "kwh", "kwh_per_1k_good_requests"]
    failing = {"slo_attainment": 0.5, **dict.fromkeys(keys, 1.0)}
    good = {"slo_attainment": 0.99, **dict.fromkeys(keys, 2.0)}
    rows = figure_rows(result_of(failing=failing, good=good), ["failing", "good"])
    for key in keys:
        assert bold(row_of(rows, key)) == [False, True], key


def test_non_resource_rows_not_gated() -> None:
    result = result_of(
        failing={"slo_attainment": 0.5, "replica_changes": 1, "ttft_p99_s": 0.1},
        good={"slo_attainment": 1.0, "replica_changes": 5, "ttft_p99_s": 0.2},
    )
    rows = figure_rows(result, ["failing", "good"])
    assert bold(row_of(rows, "replica_changes")) == [True, False]
    assert bold(row_of(rows, "ttft_p99_s")) == [True, False]


def test_attainment_margin_edge_included() -> None:
    figures = {
        "top": {"slo_attainment": 1.0},
        "edge": {"slo_attainment": 0.99},
        "below": {"slo_attainment": 0.9899},
    }
    assert attaining_policies(figures, ["top", "edge", "below"]) == {"top", "edge"}


def test_cost_row_attaining_value_missing() -> None:
    result = result_of(
        failing={"slo_attainment": 0.5, "usd": 0.1},
        good={"slo_attainment": 1.0, "usd": None},
    )
    row = row_of(figure_rows(result, ["failing", "good"]), "usd")
    assert [cell.text for cell in row.cells] == ["0.10", "n/a"]
    assert bold(row) == [False, False]


def test_cost_row_without_attainment_unmarked() -> None:
    result = result_of(a={"usd": 0.1}, b={"usd": 0.2})
    rows = figure_rows(result, ["a", "b"])
    assert attaining_policies(result["policies"], ["a", "b"]) == set()
    assert bold(row_of(rows, "usd")) == [False, False]


def test_missing_values_never_bold() -> None:
    result = result_of(a={"itl_p99_s": None}, b={"itl_p99_s": "fast"})
    row = row_of(figure_rows(result, ["a", "b"]), "itl_p99_s")
    assert [cell.text for cell in row.cells] == ["n/a", "n/a"]
    assert bold(row) == [False, False]
