"""Replica metrics, read by scraping each vLLM pod's Prometheus endpoint.

Every metric read of the console goes through this module. A value that
cannot be read is never returned as zero: it is None, and the sample's
status names the cause (missing, stale, non_finite, out_of_range, not_numeric or
kv_metric_not_found).

Requests go only to the pod IP that the Kubernetes API reported, at the
port and path of the pod's `prometheus.io/port` and `prometheus.io/path`
annotations.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

KV_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
# Finished requests, summed over the `finished_reason` label.
REQUEST_SUCCESS = "vllm:request_success_total"
# Sum and count series of the per-request token histograms, which vLLM
# observes once per finished request.
REQUEST_PROMPT_TOKENS = "vllm:request_prompt_tokens"
REQUEST_GENERATION_TOKENS = "vllm:request_generation_tokens"

# Sample statuses, the same strings as control.models.SampleStatus.
OK = "ok"
MISSING = "missing"
STALE = "stale"
NON_FINITE = "non_finite"
OUT_OF_RANGE = "out_of_range"
NOT_NUMERIC = "not_numeric"
KV_METRIC_NOT_FOUND = "kv_metric_not_found"

# Larger expositions are cut off: a vLLM pod exports well under 1 MiB.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Counters from which the cycle derives request rates and token lengths.
REQUEST_COUNTER_FIELDS = (
    "request_success_total",
    "request_prompt_tokens_sum",
    "request_prompt_tokens_count",
    "request_generation_tokens_sum",
    "request_generation_tokens_count",
)
FIELDS = (
    "kv_cache_usage",
    "num_requests_waiting",
    "num_requests_running",
    "prompt_tokens_total",
    "generation_tokens_total",
    *REQUEST_COUNTER_FIELDS,
)
# Fields without which a replica counts as not reporting.
REQUIRED_FIELDS = ("kv_cache_usage", "num_requests_waiting")


@dataclass(frozen=True)
class ScrapeTarget:
    """One pod to scrape: its name, IP, metrics endpoint and readiness.

    A pod that is not Ready yet often fails its scrape (vLLM answers 503
    while it loads the model), so its failures are logged at DEBUG only.
    """

    pod: str
    ip: str
    port: int
    path: str = "/metrics"
    ready: bool = True
    # The pod's namespace; a Prometheus source matches series on it.
    namespace: str = ""

    @property
    def failure_level(self) -> int:
        """Log level of a failed scrape: WARNING for a Ready pod, else DEBUG."""
        return logging.WARNING if self.ready else logging.DEBUG

    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        path = self.path if self.path.startswith("/") else "/" + self.path
        return f"http://{host}:{self.port}{path}"


@dataclass
class PodMetrics:
    """One pod's metrics as read in one cycle.

    `field_status` has one status per field in FIELDS; `status` is the
    first non-ok one of the required fields, or of the scrape itself.
    `error_kind` names a failed scrape: timeout, connection_refused,
    http_<code>, empty_response, parse_error or request_error.
    """

    pod: str
    sampled_at: datetime
    status: str = OK
    kv_cache_usage: float | None = None
    num_requests_waiting: float | None = None
    num_requests_running: float | None = None
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    request_success_total: float | None = None
    request_prompt_tokens_sum: float | None = None
    request_prompt_tokens_count: float | None = None
    request_generation_tokens_sum: float | None = None
    request_generation_tokens_count: float | None = None
    field_status: dict[str, str] = field(default_factory=dict)
    kv_metric_name: str = ""
    error_kind: str = ""
    detail: str = ""

    @property
    def scraped(self) -> bool:
        """True when the endpoint returned a parsable exposition."""
        return not self.error_kind

    @property
    def reporting(self) -> bool:
        """True when KV-cache usage and waiting requests are both valid."""
        return all(self.field_status.get(name) == OK for name in REQUIRED_FIELDS)

    def as_json(self) -> dict[str, object]:
        """Return a JSON-safe dict: no NaN or infinity, values already checked."""
        data: dict[str, object] = {
            "pod": self.pod,
            "sampled_at": self.sampled_at.isoformat(),
            "status": self.status,
            "field_status": dict(self.field_status),
            "kv_metric_name": self.kv_metric_name,
            "error_kind": self.error_kind,
            "detail": self.detail,
        }
        for name in FIELDS:
            data[name] = getattr(self, name)
        return data


class MetricsSource(Protocol):
    """Anything that returns one PodMetrics per target, keyed by pod name."""

    def scrape(self, targets: Sequence[ScrapeTarget]) -> dict[str, PodMetrics]: ...


# Gauges that the saturation analysis reads as their one-minute peak.
PEAK_FIELDS = ("kv_cache_usage", "num_requests_waiting")
PEAK_WINDOW_S = 60.0


def one_minute_peak(
    sample: PodMetrics, earlier: Iterable[Mapping[str, float | None]]
) -> dict[str, float | None]:
    """Return the max of each PEAK_FIELDS gauge over this scrape and earlier ones.

    `earlier` contains the pod's stored values from the last PEAK_WINDOW_S
    seconds, with None where a value was not valid. A field that is not
    valid in this scrape stays None: history never fills a missing sample.
    """
    peaks: dict[str, float | None] = {}
    for name in PEAK_FIELDS:
        current = getattr(sample, name)
        if sample.field_status.get(name) != OK or current is None:
            peaks[name] = None
            continue
        values = [current]
        for row in earlier:
            value = row.get(name)
            if value is not None and math.isfinite(value):
                values.append(value)
        peaks[name] = max(values)
    return peaks


def failed_sample(pod: str, at: datetime, error_kind: str, detail: str) -> PodMetrics:
    """Build the sample of a pod whose scrape failed: every field missing."""
    return PodMetrics(
        pod=pod,
        sampled_at=at,
        status=MISSING,
        field_status=dict.fromkeys(FIELDS, MISSING),
        error_kind=error_kind,
        detail=detail,
    )


def _check_value(name: str, value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return NON_FINITE
    if value < 0:
        return OUT_OF_RANGE
    if name == "kv_cache_usage" and value > 1.0:
        return OUT_OF_RANGE
    return OK


def _collect_samples(text: str) -> dict[str, list[tuple[float, float | None]]]:
    """Group (value, timestamp) pairs by sample name."""
    by_name: dict[str, list[tuple[float, float | None]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            stamp = sample.timestamp
            seconds = float(stamp) if stamp is not None else None
            by_name.setdefault(sample.name, []).append((float(sample.value), seconds))
    return by_name


def _aggregate(
    name: str,
    values: list[tuple[float, float | None]],
    now_s: float,
    stale_after_s: float,
) -> tuple[float | None, str, str]:
    """Reduce a series to one value per pod: max for KV usage, else the sum.

    Every value is checked before reducing, because max() and sum() with a
    NaN depend on the order of the list.
    """
    for value, stamp in values:
        status = _check_value(name, value)
        if status != OK:
            return None, status, f"{name}={value!r}"
        if stamp is not None and now_s - stamp > stale_after_s:
            age = now_s - stamp
            return None, STALE, f"{name} sample is {age:.0f} s old"
    numbers = [value for value, _ in values]
    total = max(numbers) if name == "kv_cache_usage" else sum(numbers)
    return total, OK, ""


def parse_exposition(
    pod: str,
    text: str,
    at: datetime,
    stale_after_s: float = 60.0,
) -> PodMetrics:
    """Parse one pod's Prometheus text into a PodMetrics with statuses."""
    try:
        by_name = _collect_samples(text)
    except ValueError as exc:
        sample = failed_sample(pod, at, "parse_error", f"invalid exposition: {exc}")
        sample.status = NOT_NUMERIC
        sample.field_status = dict.fromkeys(FIELDS, NOT_NUMERIC)
        return sample
    if not any(name.startswith("vllm:") for name in by_name):
        return failed_sample(
            pod, at, "empty_response", "no vllm series in the response"
        )
    sources = {
        "num_requests_waiting": WAITING,
        "num_requests_running": RUNNING,
        "prompt_tokens_total": PROMPT_TOKENS,
        "generation_tokens_total": GENERATION_TOKENS,
        "request_success_total": REQUEST_SUCCESS,
        "request_prompt_tokens_sum": REQUEST_PROMPT_TOKENS + "_sum",
        "request_prompt_tokens_count": REQUEST_PROMPT_TOKENS + "_count",
        "request_generation_tokens_sum": REQUEST_GENERATION_TOKENS + "_sum",
        "request_generation_tokens_count": REQUEST_GENERATION_TOKENS + "_count",
    }
    kv_name = next((name for name in KV_NAMES if name in by_name), "")
    result = PodMetrics(pod=pod, sampled_at=at, kv_metric_name=kv_name)
    details: list[str] = []
    if kv_name:
        sources["kv_cache_usage"] = kv_name
    else:
        result.field_status["kv_cache_usage"] = KV_METRIC_NOT_FOUND
        details.append("neither " + " nor ".join(KV_NAMES) + " is exported")
    now_s = at.timestamp()
    for attr, series in sources.items():
        if series not in by_name:
            result.field_status[attr] = MISSING
            details.append(f"{series} is not exported")
            continue
        value, status, detail = _aggregate(attr, by_name[series], now_s, stale_after_s)
        result.field_status[attr] = status
        setattr(result, attr, value)
        if detail:
            details.append(detail)
    result.status = next(
        (
            result.field_status[name]
            for name in REQUIRED_FIELDS
            if result.field_status[name] != OK
        ),
        OK,
    )
    result.detail = "; ".join(details)
    if result.status != OK:
        logger.warning("pod %s has invalid metrics: %s", pod, result.detail)
    return result


def _error_kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection_refused"
    return "request_error"


class ScrapeMetricsSource:
    """Scrapes pods in parallel, each with its own timeout.

    One pod that fails or hangs is marked missing and does not stop the
    others. The whole scrape ends within about `timeout_s` plus one second.
    """

    def __init__(
        self,
        timeout_s: float | None = None,
        stale_after_s: float = 60.0,
        max_workers: int = 16,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.timeout_s = float(timeout_s or settings.WVA_SCRAPE_TIMEOUT_S)
        self.stale_after_s = stale_after_s
        self.max_workers = max_workers
        self.clock = clock or (lambda: datetime.now(UTC))

    def scrape(self, targets: Sequence[ScrapeTarget]) -> dict[str, PodMetrics]:
        """Return one PodMetrics per target, keyed by pod name."""
        if not targets:
            return {}
        at = self.clock()
        workers = min(self.max_workers, len(targets))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrape")
        futures = {
            pool.submit(self._scrape_one, target, at): target for target in targets
        }
        done, _ = wait(futures, timeout=self.timeout_s + 1.0)
        pool.shutdown(wait=False, cancel_futures=True)
        results: dict[str, PodMetrics] = {}
        for future, target in futures.items():
            if future in done:
                results[target.pod] = future.result()
            else:
                logger.log(
                    target.failure_level,
                    "scrape of pod %s at %s timed out",
                    target.pod,
                    target.url,
                )
                results[target.pod] = failed_sample(
                    target.pod, at, "timeout", f"{target.url} timed out"
                )
        return results

    def _scrape_one(self, target: ScrapeTarget, at: datetime) -> PodMetrics:
        started = time.monotonic()
        try:
            text = self._fetch(target.url)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            logger.log(
                target.failure_level,
                "scrape of pod %s failed: HTTP %s",
                target.pod,
                code,
            )
            return failed_sample(
                target.pod, at, f"http_{code}", f"HTTP {code} from {target.url}"
            )
        except requests.RequestException as exc:
            kind = _error_kind(exc)
            logger.log(
                target.failure_level,
                "scrape of pod %s failed (%s): %s",
                target.pod,
                kind,
                exc,
            )
            return failed_sample(target.pod, at, kind, f"{kind} on {target.url}")
        elapsed_ms = (time.monotonic() - started) * 1000.0
        logger.debug("scraped pod %s in %.1f ms", target.pod, elapsed_ms)
        return parse_exposition(target.pod, text, at, self.stale_after_s)

    def _fetch(self, url: str) -> str:
        with requests.Session() as session:
            # Proxy variables from the environment must not reroute pod IPs.
            session.trust_env = False
            response = session.get(
                url,
                timeout=(self.timeout_s, self.timeout_s),
                allow_redirects=False,
                stream=True,
            )
            with response:
                response.raise_for_status()
                body = response.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
        if len(body) > MAX_BODY_BYTES:
            raise requests.RequestException(f"response from {url} exceeds 8 MiB")
        return body.decode("utf-8", errors="replace")
