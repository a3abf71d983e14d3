"""Request demand per model and the learned compute bound, from pod counters.

Demand comes from the deltas of each pod's vLLM counters between this
cycle's sample and the pod's previous stored sample:

- completion rate: finished requests (`vllm:request_success_total`) per
  second, summed over the model's pods;
- average input and output tokens per request: the deltas of the sum and
  count series of the per-request token histograms, pooled over the pods;
- arrival rate: completion rate plus the growth of waiting and running
  requests over the interval, at least 0.

Requests that the gateway rejects while every replica is saturated never
reach a pod, so the pods' counters miss them. When the metric source reads
the gateway's request rate for the model (`gateway_rates` of
`model_demand`), the observed arrival rate is the larger of the two.

A pod whose counters went back (a restart) is left out of the rates. A
window in which no request finished is "no traffic": completion rate 0
and the token lengths last measured. The demand is unknown when a ready
pod of the model has no valid counters, no earlier sample to compare
with, or an interval shorter than MIN_INTERVAL_S. The cycle then sends
none, so the policy falls back to its saturation rules.

The arrival rate sent to the policy is max(observed, forecast), with the
forecast of `optimizer.forecast` one start-up delay (`WVA_STARTUP_DELAY_S`)
ahead, so a scale-up starts before the rising load saturates the fleet.

The compute bound k2 is learned per variant as the tokens in use (KV usage
times the KV pool) when a replica's waiting queue first reaches the
model's queue threshold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from optimizer.forecast import Forecast, gateway_counts_all, smoothed_arrival_rate
from wva_web.catalog.models import InferenceModel, Variant
from wva_web.control.cycle_view import VariantView
from wva_web.control.models import (
    ControlCycle,
    DemandSample,
    MetricSample,
    VariantState,
)
from wva_web.integrations import kube, metrics

logger = logging.getLogger(__name__)

# A previous sample older than this is not compared with: the rate would
# average over a span too long to describe the present load.
MAX_INTERVAL_S = 600.0
# A rate over a shorter interval is mostly noise from the scrape timing, or
# comes from clocks that disagree.
MIN_INTERVAL_S = 5.0
# Seconds of demand history the forecast fits its trend to.
FORECAST_WINDOW_S = 300.0
# Bounds of what one engine can report per interval: far above any GPU's
# throughput and context length, far below a corrupt counter.
MAX_POD_COMPLETION_RATE = 10_000.0
MAX_TOKENS_PER_REQUEST = 10_000_000.0
# History read for the smoothing: the simulator's `wva` keeps 600 s too.
HISTORY_WINDOW_S = 600.0
# The learned compute bound is a running mean of its first observations,
# then an exponential moving average with weight 1 / LEARNED_COMPUTE_WINDOW.
LEARNED_COMPUTE_WINDOW = 20
IN_FLIGHT_FIELDS = ("num_requests_waiting", "num_requests_running")
COUNTER_FIELDS = (*metrics.REQUEST_COUNTER_FIELDS, *IN_FLIGHT_FIELDS)


@dataclass(frozen=True)
class PodCounters:
    """One pod's request counters and in-flight requests at one time."""

    at: datetime
    success: float
    prompt_sum: float
    prompt_count: float
    generation_sum: float
    generation_count: float
    in_flight: float

    @classmethod
    def from_values(cls, at: datetime, values: Mapping[str, Any]) -> PodCounters:
        return cls(
            at=at,
            success=float(values["request_success_total"]),
            prompt_sum=float(values["request_prompt_tokens_sum"]),
            prompt_count=float(values["request_prompt_tokens_count"]),
            generation_sum=float(values["request_generation_tokens_sum"]),
            generation_count=float(values["request_generation_tokens_count"]),
            in_flight=float(values["num_requests_waiting"])
            + float(values["num_requests_running"]),
        )

    @classmethod
    def from_sample(cls, sample: metrics.PodMetrics | None) -> PodCounters | None:
        """Return the sample's counters, or None when one is not valid."""
        if sample is None:
            return None
        if any(sample.field_status.get(n) != metrics.OK for n in COUNTER_FIELDS):
            return None
        values = {name: getattr(sample, name) for name in COUNTER_FIELDS}
        return cls.from_values(sample.sampled_at, values)

    @classmethod
    def zero(cls, at: datetime) -> PodCounters:
        """Counters of an engine that has just started."""
        return cls(at, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def went_back(self, earlier: PodCounters) -> bool:
        """Tell whether any counter is below its earlier value: a reset."""
        return (
            self.success < earlier.success
            or self.prompt_sum < earlier.prompt_sum
            or self.prompt_count < earlier.prompt_count
            or self.generation_sum < earlier.generation_sum
            or self.generation_count < earlier.generation_count
        )


@dataclass
class ModelDemand:
    """One model's measured demand, or why it is unknown.

    Rates are requests/s. `variant_completion_rates` gives each variant's
    share of the completion rate. `forecast` is set once the demand is known.
    """

    known: bool
    reason: str = ""
    interval_s: float | None = None
    completion_rate: float | None = None
    arrival_rate: float | None = None
    avg_input_tokens: float | None = None
    avg_output_tokens: float | None = None
    idle: bool = False
    reset_pods: list[str] = field(default_factory=list)
    variant_completion_rates: dict[str, float] = field(default_factory=dict)
    forecast: Forecast | None = None
    # EWMA of the observations, and the rate to size for: the EWMA's peak
    # over the hold window or its significant trend projected ahead.
    smoothed_rate: float | None = None
    sized_rate: float | None = None
    # Rates behind `arrival_rate` once the demand is known, from the pods'
    # counters and the gateway's. The gateway's is None without a reading.
    pod_arrival_rate: float | None = None
    gateway_arrival_rate: float | None = None

    @property
    def includes_rejected(self) -> bool:
        """Tell whether the observed rate counts the requests the gateway rejected.

        NOTE: a picker that records rejections without a model name counts
        about the pods' rate, so it passes this check although its rejected
        requests are missing.
        """
        return gateway_counts_all(self.pod_arrival_rate, self.gateway_arrival_rate)

    @property
    def sent_arrival_rate(self) -> float | None:
        """The arrival rate sent to the policy: the smoothed, held rate."""
        if not self.known or self.arrival_rate is None:
            return None
        if self.sized_rate is None:
            return self.arrival_rate
        return self.sized_rate

    def state_json(self) -> dict[str, Any] | None:
        """Build the `demand.<model>` object of the optimizer state, None if unknown."""
        if not self.known:
            return None
        return {
            "arrival_rate": self.sent_arrival_rate,
            "completion_rate": self.completion_rate,
            "avg_input_tokens": self.avg_input_tokens,
            "avg_output_tokens": self.avg_output_tokens,
            "includes_rejected": self.includes_rejected,
        }

    def as_json(self) -> dict[str, Any]:
        """Return the demand, forecast and reason for decision inputs and pages."""
        forecast = self.forecast
        return {
            "known": self.known,
            "reason": self.reason,
            "interval_s": self.interval_s,
            "completion_rate": self.completion_rate,
            "observed_arrival_rate": self.arrival_rate,
            "pod_arrival_rate": self.pod_arrival_rate,
            "gateway_arrival_rate": self.gateway_arrival_rate,
            "forecast_rate": forecast.projected if forecast else None,
            "trend_per_s": forecast.trend_per_s if forecast else None,
            "smoothed_rate": self.smoothed_rate,
            "forecast_points": forecast.points if forecast else 0,
            "horizon_s": forecast.horizon_s if forecast else None,
            "arrival_rate": self.sent_arrival_rate,
            "avg_input_tokens": self.avg_input_tokens,
            "avg_output_tokens": self.avg_output_tokens,
            "idle": self.idle,
            "reset_pods": list(self.reset_pods),
        }


def unknown(reason: str) -> ModelDemand:
    return ModelDemand(known=False, reason=reason)


PodKey = tuple[int, str]


def previous_counters(
    views: Iterable[VariantView], now: datetime, exclude_cycle: int | None = None
) -> dict[PodKey, PodCounters]:
    """Return each live pod's latest stored counters before `now`, by (variant, pod).

    Samples older than MAX_INTERVAL_S and samples without valid counters
    are skipped. `exclude_cycle` leaves out the rows of a cycle being stored.
    """
    names: set[str] = set()
    variant_ids: set[int] = set()
    for view in views:
        variant_ids.add(view.variant.pk)
        names.update(pod.name for pod in view.live_pods)
    if not names:
        return {}
    filters: dict[str, Any] = {f"{name}__isnull": False for name in COUNTER_FIELDS}
    rows = (
        MetricSample.objects.filter(
            variant_id__in=variant_ids,
            pod__in=names,
            sampled_at__lt=now,
            sampled_at__gte=now - timedelta(seconds=MAX_INTERVAL_S),
            **filters,
        )
        .exclude(cycle_id=exclude_cycle)
        .order_by("variant_id", "pod", "-sampled_at")
        .values("variant_id", "pod", "sampled_at", *COUNTER_FIELDS)
    )
    latest: dict[PodKey, PodCounters] = {}
    for row in rows:
        key = (row["variant_id"], row["pod"])
        if key not in latest:
            latest[key] = PodCounters.from_values(row["sampled_at"], row)
    return latest


def _baseline(
    view: VariantView,
    pod: kube.PodInfo,
    previous: Mapping[PodKey, PodCounters],
    now: datetime,
) -> PodCounters | None:
    """Return the counters to compare with: the pod's previous sample, or zero.

    A pod created less than MAX_INTERVAL_S ago without a stored sample
    started its engine after its creation, so its counters count from 0.
    """
    earlier = previous.get((view.variant.pk, pod.name))
    if earlier is not None:
        return earlier
    created = pod.created_at
    if created is not None and (now - created).total_seconds() <= MAX_INTERVAL_S:
        return PodCounters.zero(created)
    return None


def plausible(now: PodCounters, earlier: PodCounters) -> bool:
    """Tell whether one pod's deltas could come from one vLLM engine.

    A corrupt or foreign counter (1e300 requests, say) would otherwise size
    the whole fleet; such a pod makes the model's demand unknown instead.
    """
    interval = (now.at - earlier.at).total_seconds()
    finished = now.success - earlier.success
    if finished / interval > MAX_POD_COMPLETION_RATE:
        return False
    for total, count in (
        (now.prompt_sum - earlier.prompt_sum, now.prompt_count - earlier.prompt_count),
        (
            now.generation_sum - earlier.generation_sum,
            now.generation_count - earlier.generation_count,
        ),
    ):
        if count > 0 and total / count > MAX_TOKENS_PER_REQUEST:
            return False
    return True


@dataclass
class _Totals:
    completion_rate: float = 0.0
    growth_rate: float = 0.0
    finished: float = 0.0
    prompt_sum: float = 0.0
    prompt_count: float = 0.0
    generation_sum: float = 0.0
    generation_count: float = 0.0
    interval_s: float = 0.0
    pods: int = 0
    by_variant: dict[str, float] = field(default_factory=dict)

    def add(self, variant: str, now: PodCounters, earlier: PodCounters) -> None:
        interval = (now.at - earlier.at).total_seconds()
        rate = (now.success - earlier.success) / interval
        self.completion_rate += rate
        self.by_variant[variant] = self.by_variant.get(variant, 0.0) + rate
        self.growth_rate += (now.in_flight - earlier.in_flight) / interval
        self.finished += now.success - earlier.success
        self.prompt_sum += now.prompt_sum - earlier.prompt_sum
        self.prompt_count += now.prompt_count - earlier.prompt_count
        self.generation_sum += now.generation_sum - earlier.generation_sum
        self.generation_count += now.generation_count - earlier.generation_count
        self.interval_s = max(self.interval_s, interval)
        self.pods += 1


def measure_demand(
    views: Iterable[VariantView],
    previous: Mapping[PodKey, PodCounters],
    now: datetime,
    last_tokens: tuple[float | None, float | None] = (None, None),
) -> ModelDemand:
    """Measure one model's demand from its pods' counter deltas.

    `last_tokens` contains the average input and output tokens last
    measured, used when no request finished in the interval.
    """
    totals = _Totals()
    resets: list[str] = []
    for view in views:
        if view.current is None:
            return unknown(f"kube_unavailable:{view.variant.name}")
        ready = {pod.name for pod in view.ready_pods}
        for variant_pod in view.live_pods:
            name = variant_pod.name
            counters = PodCounters.from_sample(view.samples.get(name))
            if counters is None:
                if name in ready:
                    return unknown(f"missing_counters:{name}")
                continue
            earlier = _baseline(view, variant_pod, previous, now)
            if earlier is None:
                if name in ready:
                    return unknown(f"no_previous_sample:{name}")
                continue
            if counters.went_back(earlier):
                # The engine restarted within the interval, so its counters
                # count from 0 since then, as Prometheus's rate() assumes.
                resets.append(name)
                earlier = PodCounters.zero(earlier.at)
            if (counters.at - earlier.at).total_seconds() < MIN_INTERVAL_S:
                if name in ready:
                    return unknown(f"interval_too_short:{name}")
                continue
            if not plausible(counters, earlier):
                return unknown(f"implausible_counters:{name}")
            totals.add(view.variant.name, counters, earlier)
    if totals.pods == 0:
        if resets:
            return ModelDemand(known=False, reason="counter_reset", reset_pods=resets)
        return unknown("no_pods_with_counters")
    return _demand_from_totals(totals, resets, last_tokens)


def _demand_from_totals(
    totals: _Totals,
    resets: list[str],
    last_tokens: tuple[float | None, float | None],
) -> ModelDemand:
    input_tokens, output_tokens = last_tokens
    if totals.prompt_count > 0:
        input_tokens = totals.prompt_sum / totals.prompt_count
    if totals.generation_count > 0:
        output_tokens = totals.generation_sum / totals.generation_count
    return ModelDemand(
        known=True,
        interval_s=totals.interval_s,
        completion_rate=totals.completion_rate,
        arrival_rate=max(0.0, totals.completion_rate + totals.growth_rate),
        avg_input_tokens=input_tokens,
        avg_output_tokens=output_tokens,
        idle=totals.finished == 0,
        reset_pods=resets,
        variant_completion_rates=dict(totals.by_variant),
    )


def startup_delay_s() -> float:
    """Return the forecast horizon: WVA_STARTUP_DELAY_S, at least 0."""
    value = float(settings.WVA_STARTUP_DELAY_S)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"WVA_STARTUP_DELAY_S must be a number >= 0, got {value!r}")
    return value


def demand_history(model: InferenceModel, now: datetime) -> list[tuple[float, float]]:
    """Return (time s, arrival rate) of the model's known demand in the window."""
    since = now - timedelta(seconds=HISTORY_WINDOW_S)
    rows = DemandSample.objects.filter(
        model=model, known=True, at__gte=since, at__lt=now, arrival_rate__isnull=False
    ).values_list("at", "arrival_rate")
    return [(at.timestamp(), float(rate)) for at, rate in rows]


def last_token_lengths(model: InferenceModel) -> tuple[float | None, float | None]:
    """Return the model's last measured average input and output tokens."""
    row = (
        DemandSample.objects.filter(
            model=model,
            avg_input_tokens__isnull=False,
            avg_output_tokens__isnull=False,
        )
        .order_by("-at", "-pk")
        .values_list("avg_input_tokens", "avg_output_tokens")
        .first()
    )
    return (row[0], row[1]) if row else (None, None)


def include_gateway_rate(demand: ModelDemand, gateway_rate: float | None) -> None:
    """Record the pods' and the gateway's rates, and observe the larger one.

    NOTE: a demand that the pods leave unknown, for example with no ready
    pod that has counters, stays unknown even when the gateway counts
    requests for the model.
    """
    if not demand.known or demand.arrival_rate is None:
        return
    demand.pod_arrival_rate = demand.arrival_rate
    if gateway_rate is None or not math.isfinite(gateway_rate) or gateway_rate < 0:
        return
    demand.gateway_arrival_rate = gateway_rate
    demand.arrival_rate = max(demand.arrival_rate, gateway_rate)


def model_demand(
    model: InferenceModel,
    views: list[VariantView],
    now: datetime,
    gateway_rates: Mapping[str, float] | None = None,
) -> ModelDemand:
    """Measure the model's demand now and forecast its arrival rate.

    `gateway_rates` contains the gateway's request rate by model name, as
    the Prometheus metric source reads it. Without one for this model, the
    demand comes from the pods alone.
    """
    previous = previous_counters(views, now)
    demand = measure_demand(views, previous, now, last_token_lengths(model))
    include_gateway_rate(demand, (gateway_rates or {}).get(model.name))
    if demand.known and demand.arrival_rate is not None:
        history = [*demand_history(model, now), (now.timestamp(), demand.arrival_rate)]
        # The same smoothing as the fleet simulator's `wva`, so a comparison
        # describes what the console does.
        sized = smoothed_arrival_rate(
            history, now.timestamp(), startup_delay_s(), window_s=FORECAST_WINDOW_S
        )
        demand.forecast = sized.forecast
        demand.smoothed_rate = sized.smoothed
        demand.sized_rate = sized.rate
    if demand.reset_pods:
        logger.info(
            "model %s: counters of %s went back (restart), left out of the demand",
            model.name,
            ", ".join(demand.reset_pods),
        )
    return demand


def store_demand(
    cycle: ControlCycle, summaries: Mapping[str, Mapping[str, Any]], now: datetime
) -> None:
    """Store a DemandSample for every model whose summary carries a `demand`."""
    measured = {
        name: summary["demand"]
        for name, summary in summaries.items()
        if isinstance(summary.get("demand"), dict)
    }
    if not measured:
        return
    rows = []
    for model in InferenceModel.objects.filter(name__in=list(measured)):
        demand = measured[model.name]
        rows.append(
            DemandSample(
                cycle=cycle,
                model=model,
                at=now,
                known=bool(demand["known"]),
                reason=str(demand["reason"])[:255],
                interval_s=demand["interval_s"],
                completion_rate=demand["completion_rate"],
                arrival_rate=demand["observed_arrival_rate"],
                avg_input_tokens=demand["avg_input_tokens"],
                avg_output_tokens=demand["avg_output_tokens"],
                idle=bool(demand["idle"]),
                forecast_rate=demand["forecast_rate"],
                trend_per_s=demand["trend_per_s"],
                sent_arrival_rate=demand["arrival_rate"],
                reset_pods=list(demand["reset_pods"]),
            )
        )
    DemandSample.objects.bulk_create(rows)


# Learned compute bound.


def kv_pool_tokens(variant: Variant) -> float | None:
    """Return the variant's KV pool in tokens from its profile, None if unknown."""
    stored = variant.profile or {}
    pool = stored.get("kv_tokens")
    blocks, block_size = stored.get("num_gpu_blocks"), stored.get("block_size")
    if pool is None and blocks and block_size:
        pool = float(blocks) * float(block_size)
    if pool is None:
        return None
    value = float(pool)
    return value if math.isfinite(value) and value > 0 else None


def queue_threshold_tokens(
    view: VariantView, previous_waiting: Mapping[str, float]
) -> list[float]:
    """Return the tokens in use of each replica whose queue reached its threshold now.

    A replica counts when its previous waiting count was below the model's
    queue threshold and its current one is at or above it.
    """
    pool = kv_pool_tokens(view.variant)
    if pool is None:
        return []
    threshold = view.variant.model.queue_length_threshold
    observed: list[float] = []
    for pod in view.ready_pods:
        sample = view.samples.get(pod.name)
        before = previous_waiting.get(pod.name)
        if sample is None or before is None or before >= threshold:
            continue
        if any(
            sample.field_status.get(name) != metrics.OK
            for name in ("kv_cache_usage", "num_requests_waiting")
        ):
            continue
        waiting, kv = sample.num_requests_waiting, sample.kv_cache_usage
        if waiting is not None and kv is not None and waiting >= threshold:
            observed.append(kv * pool)
    return observed


def rolling_mean(
    mean: float | None, count: int, observations: Iterable[float]
) -> tuple[float | None, int]:
    """Fold observations into the learned bound and its observation count."""
    for value in observations:
        count += 1
        if mean is None:
            mean = value
        else:
            mean += (value - mean) / min(count, LEARNED_COMPUTE_WINDOW)
    return mean, count


def learn_compute_bound(
    cycle: ControlCycle, views: Iterable[VariantView], now: datetime
) -> None:
    """Update each variant's learned compute bound from this cycle's samples."""
    readable = [view for view in views if view.current is not None]
    previous = previous_waiting(readable, now, cycle.pk)
    for view in readable:
        observed = queue_threshold_tokens(view, previous.get(view.variant.pk, {}))
        if not observed:
            continue
        state = VariantState.objects.filter(variant=view.variant).first()
        if state is None:
            continue
        mean, count = rolling_mean(
            state.learned_compute_tokens, state.learned_compute_count, observed
        )
        VariantState.objects.filter(pk=state.pk).update(
            learned_compute_tokens=mean, learned_compute_count=count
        )
        logger.info(
            "variant %s: learned compute bound %.0f tokens from %d observations",
            view.variant.name,
            mean or 0.0,
            count,
        )


def previous_waiting(
    views: Iterable[VariantView], now: datetime, exclude_cycle: int | None
) -> dict[int, dict[str, float]]:
    """Return each ready pod's latest stored waiting count, by variant id and pod."""
    names: set[str] = set()
    variant_ids: set[int] = set()
    for view in views:
        variant_ids.add(view.variant.pk)
        names.update(pod.name for pod in view.ready_pods)
    if not names:
        return {}
    rows = (
        MetricSample.objects.filter(
            variant_id__in=variant_ids,
            pod__in=names,
            sampled_at__lt=now,
            sampled_at__gte=now - timedelta(seconds=MAX_INTERVAL_S),
            num_requests_waiting__isnull=False,
        )
        .exclude(cycle_id=exclude_cycle)
        .order_by("variant_id", "pod", "-sampled_at")
        .values_list("variant_id", "pod", "num_requests_waiting")
    )
    latest: dict[int, dict[str, float]] = {}
    for variant_id, pod, waiting in rows:
        latest.setdefault(variant_id, {}).setdefault(pod, float(waiting))
    return latest


def store(
    cycle: ControlCycle,
    views: Iterable[VariantView],
    summaries: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> None:
    """Store the cycle's demand samples and update the learned compute bounds."""
    store_demand(cycle, summaries, now)
    learn_compute_bound(cycle, list(views), now)
