"""Request traces: the Azure LLM inference trace (conversation service, 2023).

Columns `TIMESTAMP`, `ContextTokens` (prompt tokens) and `GeneratedTokens`
(output tokens). The first 26 characters of a timestamp parse with
`%Y-%m-%d %H:%M:%S.%f`; arrival times are seconds after the first row.

A replay divides arrival times by a compression factor (2.0 plays the trace
twice as fast) and loops: loop n starts one trace period after loop n - 1,
where the period is the trace's span plus its mean gap between arrivals, so
the seam keeps the trace's mean rate.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and row."""


@dataclass(frozen=True)
class TraceRequest:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


def load_trace(path: Path) -> list[TraceRequest]:
    """Read a trace; arrival times are seconds after the first row."""
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise TraceError(f"cannot open trace {path}: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = [
            _parse_row(path, number, row) for number, row in enumerate(reader, start=2)
        ]
    if not rows:
        raise TraceError(f"{path}: no requests")
    start = rows[0][0]
    requests = []
    previous = start
    for number, (stamp, prompt, output) in enumerate(rows, start=2):
        if stamp < previous:
            raise TraceError(
                f"{path}, row {number}: TIMESTAMP {stamp} is earlier than the "
                "row before"
            )
        previous = stamp
        requests.append(TraceRequest((stamp - start).total_seconds(), prompt, output))
    return requests


def _parse_row(
    path: Path, number: int, row: dict[str, str]
) -> tuple[datetime, int, int]:
    raw_stamp = (row.get("TIMESTAMP") or "").strip()
    try:
        # The trace gives no zone; only differences between rows are used.
        stamp = datetime.strptime(raw_stamp[:26], TIMESTAMP_FORMAT)  # noqa: DTZ007
    except ValueError:
        raise TraceError(
            f"{path}, row {number}: invalid TIMESTAMP {raw_stamp!r}, expected "
            "'YYYY-MM-DD HH:MM:SS.ffffff'"
        ) from None
    prompt = _parse_tokens(path, number, row, "ContextTokens", minimum=0)
    output = _parse_tokens(path, number, row, "GeneratedTokens", minimum=1)
    return stamp, prompt, output


def _parse_tokens(
    path: Path, number: int, row: dict[str, str], column: str, *, minimum: int
) -> int:
    raw = (row.get(column) or "").strip()
    try:
        value = int(raw)
    except ValueError:
        raise TraceError(
            f"{path}, row {number}: {column} must be an integer, got {raw!r}"
        ) from None
    if value < minimum:
        raise TraceError(
            f"{path}, row {number}: {column} must be >= {minimum}, got {value}"
        )
    return value


def trace_period_s(requests: list[TraceRequest]) -> float:
    """Return the loop period: span of the trace plus its mean inter-arrival gap."""
    span = requests[-1].arrival_s - requests[0].arrival_s
    gap = span / (len(requests) - 1) if len(requests) > 1 else 1.0
    return span + max(gap, 1e-6)


def replay(
    requests: list[TraceRequest], compression: float = 1.0, *, loop: bool = True
) -> Iterator[tuple[float, int, int]]:
    """Yield (arrival s, prompt tokens, output tokens), compressed and looped."""
    if not compression > 0:
        raise ValueError(f"compression must be > 0, got {compression}")
    if not requests:
        return
    period = trace_period_s(requests)
    loops = itertools.count() if loop else range(1)
    for index in loops:
        offset = index * period
        for request in requests:
            arrival = (offset + request.arrival_s) / compression
            yield arrival, request.prompt_tokens, request.output_tokens
