"""Request traces: the Azure LLM inference traces (2023) and Mooncake (2025).

Azure columns `TIMESTAMP`, `ContextTokens` (prompt tokens) and `GeneratedTokens`
(output tokens). The first 26 characters of a timestamp parse with
`%Y-%m-%d %H:%M:%S.%f`; arrival times are seconds after the first row.

Mooncake traces are JSON lines with `timestamp` (ms), `input_length` and
`output_length`, gzip-compressed or not. `load_named_trace` loads the
copies in `data/traces/` by name (`TRACE_FILES`), and `scale_load`
multiplies a trace's rate by compressing time or by superposing shifted
copies.

A replay divides arrival times by a compression factor (2.0 plays the trace
twice as fast) and loops: loop n starts one trace period after loop n - 1,
where the period is the trace's span plus its mean gap between arrivals, so
the seam keeps the trace's mean rate.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import math
import random
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


# -- named traces and load scaling ----------------------------------------

TRACE_DIR = Path(__file__).resolve().parent.parent / "data" / "traces"
TRACE_FILES = {
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-code": "AzureLLMInferenceTrace_code.csv",
    "mooncake-conv": "mooncake_conversation_trace.jsonl.gz",
    "mooncake-synthetic": "mooncake_synthetic_trace.jsonl.gz",
}
SCALE_MODES = ("compress", "superpose")


def load_mooncake(path: Path) -> list[TraceRequest]:
    """Read a Mooncake JSONL trace, gzip-compressed when the name ends in `.gz`.

    Each line contains `timestamp` (ms from the start of the trace),
    `input_length` and `output_length`; `hash_ids` are ignored because the
    engine models no prefix cache. Arrival times are seconds after the
    first row, which need not be at 0.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            rows = [
                _parse_mooncake_line(path, number, line)
                for number, line in enumerate(handle, start=1)
                if line.strip()
            ]
    except OSError as exc:
        raise TraceError(f"cannot open trace {path}: {exc}") from exc
    if not rows:
        raise TraceError(f"{path}: no requests")
    start = rows[0][0]
    requests = []
    previous = start
    for number, (stamp_ms, prompt, output) in enumerate(rows, start=1):
        if stamp_ms < previous:
            raise TraceError(
                f"{path}, line {number}: timestamp {stamp_ms} is earlier than the "
                "line before"
            )
        previous = stamp_ms
        requests.append(TraceRequest((stamp_ms - start) / 1000.0, prompt, output))
    return requests


def _parse_mooncake_line(path: Path, number: int, line: str) -> tuple[float, int, int]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{path}, line {number}: invalid JSON: {exc}") from None
    if not isinstance(item, dict):
        raise TraceError(f"{path}, line {number}: expected a JSON object")
    values = []
    for key, minimum in (("timestamp", 0), ("input_length", 0), ("output_length", 1)):
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TraceError(
                f"{path}, line {number}: {key} must be a number, got {value!r}"
            )
        if not math.isfinite(value) or value < minimum:
            raise TraceError(
                f"{path}, line {number}: {key} must be >= {minimum}, got {value}"
            )
        values.append(value)
    return float(values[0]), int(values[1]), int(values[2])


def load_named_trace(name: str, directory: Path = TRACE_DIR) -> list[TraceRequest]:
    """Load one of `TRACE_FILES` by name; raise TraceError for an unknown name."""
    filename = TRACE_FILES.get(name)
    if filename is None:
        raise TraceError(
            f"unknown trace {name!r}; expected one of {', '.join(TRACE_FILES)}"
        )
    path = directory / filename
    if filename.endswith((".jsonl", ".jsonl.gz")):
        return load_mooncake(path)
    return load_trace(path)


def scale_load(
    requests: list[TraceRequest], factor: float, mode: str, seed: int = 0
) -> list[TraceRequest]:
    """Multiply a trace's request rate by `factor`, sorted by arrival.

    `compress` divides every arrival time by `factor`: the same requests in
    1/factor of the time. `superpose` keeps the duration. It overlays
    `floor(factor)` copies, each shifted by a seeded random offset in
    [0, period) that wraps around the end of the trace. For a non-integer
    factor, one more shifted copy keeps a seeded random `factor % 1`
    fraction of its requests. Copy 0 is the trace itself, unshifted.
    The period is `trace_period_s`, so a wrapped request lands where the
    next loop of the trace would start.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale factor must be > 0, got {factor}")
    if mode not in SCALE_MODES:
        raise ValueError(
            f"unknown scale mode {mode!r}; expected one of {', '.join(SCALE_MODES)}"
        )
    if not requests:
        return []
    if mode == "compress":
        return [
            TraceRequest(r.arrival_s / factor, r.prompt_tokens, r.output_tokens)
            for r in requests
        ]
    rng = random.Random(seed)
    period = trace_period_s(requests)
    whole, fraction = divmod(factor, 1.0)
    copies: list[TraceRequest] = []
    for index in range(int(whole) + (1 if fraction > 1e-9 else 0)):
        offset = 0.0 if index == 0 else rng.uniform(0.0, period)
        keep = fraction if index == int(whole) else 1.0
        for request in requests:
            if keep < 1.0 and rng.random() >= keep:
                continue
            arrival = (request.arrival_s + offset) % period
            copies.append(
                TraceRequest(arrival, request.prompt_tokens, request.output_tokens)
            )
    copies.sort(key=lambda r: r.arrival_s)
    return copies
