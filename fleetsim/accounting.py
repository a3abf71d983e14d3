"""Outcome of one simulated run: goodput, failures, latency, cost and energy.

A request is good when it completed with its time to first token (TTFT)
and its mean inter-token latency (ITL, decode time over output tokens
after the first) within its service class's targets. SLO attainment is
good requests over all requests of the trace, failed ones included.

Cost, GPU-hours and energy are sampled at every metric scrape and kept
until the next one. A pod with a GPU costs its GPU price. It draws idle
power while starting and, once ready, the power of its KV-cache usage on
the accelerator's curve (`optimizer.power`), which is the utilisation
that the console's overview shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetsim.replica import Request, RequestState

FAILURE_CAUSES = (
    "rejected_queue_full",
    "rejected_no_replica",
    "too_long",
    "timeout",
    "lost_scale_down",
    "unfinished",
)
_STATE_CAUSES = {
    RequestState.TIMED_OUT: "timeout",
    RequestState.LOST: "lost_scale_down",
}


@dataclass(frozen=True)
class ClassTargets:
    name: str
    ttft_s: float
    itl_s: float


@dataclass
class Tally:
    """Running totals of one policy's run, filled while it is simulated."""

    gpu_seconds: float = 0.0
    usd: float = 0.0
    joules: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)
    scale_events: list[tuple[float, str, int, int]] = field(default_factory=list)
    series: dict[str, list[Any]] = field(default_factory=dict)

    def reject(self, cause: str) -> None:
        self.rejected[cause] = self.rejected.get(cause, 0) + 1

    def add_interval(
        self, seconds: float, gpus: int, usd_per_hour: float, watts: float
    ) -> None:
        self.gpu_seconds += gpus * seconds
        self.usd += usd_per_hour * seconds / 3600.0
        self.joules += watts * seconds


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(np.asarray(values), [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def request_itl_s(request: Request) -> float | None:
    """Mean inter-token latency of a completed request; None for one output token."""
    if request.first_token_at is None or request.finished_at is None:
        return None
    if request.output <= 1:
        return None
    return (request.finished_at - request.first_token_at) / (request.output - 1)


def is_good(request: Request, targets: ClassTargets) -> bool:
    if request.state is not RequestState.DONE or request.first_token_at is None:
        return False
    if request.first_token_at - request.arrival > targets.ttft_s:
        return False
    itl = request_itl_s(request)
    return itl is None or itl <= targets.itl_s


def count_reversals(events: Sequence[tuple[float, str, int, int]]) -> int:
    """Count direction changes between consecutive changes of each variant."""
    last: dict[str, int] = {}
    reversals = 0
    for _, variant, before, after in events:
        direction = 1 if after > before else -1
        if last.get(variant, direction) != direction:
            reversals += 1
        last[variant] = direction
    return reversals


def summarise(
    requests: Sequence[Request | None],
    classes: Sequence[int],
    targets: Sequence[ClassTargets],
    tally: Tally,
    duration_s: float,
) -> dict[str, Any]:
    """Reduce one run to the figures `compare` reports; all values are plain JSON."""
    failures = dict.fromkeys(FAILURE_CAUSES, 0)
    for cause, count in tally.rejected.items():
        failures[cause] += count
    good = good_tokens = 0
    ttfts: list[float] = []
    itls: list[float] = []
    per_class = {t.name: {"requests": 0, "good": 0} for t in targets}
    for request, class_index in zip(requests, classes, strict=True):
        target = targets[class_index]
        per_class[target.name]["requests"] += 1
        if request is None:
            continue
        cause = _STATE_CAUSES.get(request.state)
        if cause is not None:
            failures[cause] += 1
            continue
        if request.state is not RequestState.DONE:
            failures["unfinished"] += 1
            continue
        if request.first_token_at is not None:
            ttfts.append(request.first_token_at - request.arrival)
        itl = request_itl_s(request)
        if itl is not None:
            itls.append(itl)
        if is_good(request, target):
            good += 1
            good_tokens += request.output
            per_class[target.name]["good"] += 1
    total = len(requests)
    kwh = tally.joules / 3.6e6
    ttft = _percentiles(ttfts)
    itl = _percentiles(itls)
    return {
        "requests": total,
        "good_requests": good,
        "goodput_rps": good / duration_s,
        "goodput_tokens_per_s": good_tokens / duration_s,
        "slo_attainment": good / total if total else 1.0,
        "slo_attainment_by_class": {
            name: (c["good"] / c["requests"] if c["requests"] else None)
            for name, c in per_class.items()
        },
        "failed_requests": sum(failures.values()),
        "failures_by_cause": failures,
        "completed_requests": len(ttfts),
        "ttft_p50_s": ttft["p50"],
        "ttft_p90_s": ttft["p90"],
        "ttft_p99_s": ttft["p99"],
        "itl_p50_s": itl["p50"],
        "itl_p90_s": itl["p90"],
        "itl_p99_s": itl["p99"],
        "gpu_hours": tally.gpu_seconds / 3600.0,
        "usd": tally.usd,
        "kwh": kwh,
        "kwh_per_1k_good_requests": (kwh / good * 1000.0) if good else None,
        "scale_actions": len(tally.scale_events),
        "replica_changes": sum(abs(a - b) for _, _, b, a in tally.scale_events),
        "reversals": count_reversals(tally.scale_events),
        "scale_events": [
            {"at_s": t, "variant": v, "from": b, "to": a}
            for t, v, b, a in tally.scale_events
        ],
        "series": tally.series,
    }
