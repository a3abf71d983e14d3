"""Replica metrics read from a Prometheus server through its HTTP query API.

`PrometheusMetricsSource` is the cluster-side alternative to scraping each
pod (`metrics.ScrapeMetricsSource`). It sends one instant PromQL query per
cycle to `/api/v1/query`. The query joins the per-pod one-minute peaks of
the vLLM gauges, the latest counter totals, each pod's newest sample
timestamp and the gateway's inference-pool averages. Pods are matched by
the `namespace` and `pod` labels that Kubernetes pod discovery gives. A
second query reads the gateway's request rate per model (`read_gateway_rates`).

The module calls the API with `requests`, which the console already uses.
One POST with a form body and one JSON vector back is the whole protocol
here. A client library would add its own dependencies and retry rules but
no feature that this module uses.

As in `metrics`, a value that cannot be read is never returned as zero. An
empty result is `missing`, a NaN is `non_finite`, and a pod whose newest
sample is older than `stale_after_s` is `stale`. When Prometheus cannot be
reached, every pod is missing with the error kind `prometheus_unavailable`,
`prometheus_timeout` or `prometheus_error`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from wva_web.integrations import metrics
from wva_web.integrations.metrics import PodMetrics, ScrapeTarget

logger = logging.getLogger(__name__)

# Error kinds of a failed query; every target gets the same one.
PROMETHEUS_UNAVAILABLE = "prometheus_unavailable"
PROMETHEUS_TIMEOUT = "prometheus_timeout"
PROMETHEUS_ERROR = "prometheus_error"
# Error kinds of one pod when the query succeeds.
NO_SERIES = "no_series"
AMBIGUOUS_POD = "ambiguous_pod"
# Prometheus stores the pod's `up` series but no vLLM series of it.
SCRAPE_FAILED = "scrape_failed"
METRIC_NOT_FOUND = "metric_not_found"

# The label that names which part of the joined query a series belongs to.
FIELD_LABEL = "wva_field"
PEAK_WINDOW = "1m"
# Keys of the joined query that are not PodMetrics fields.
KV_NEW = "kv_cache_usage_perc"
KV_OLD = "gpu_cache_usage_perc"
POOL_QUEUE = "inference_pool_average_queue_size"
POOL_KV = "inference_pool_average_kv_cache_utilization"
POOL_FIELDS = (POOL_QUEUE, POOL_KV)

# Counters of the gateway's endpoint picker (Gateway API Inference
# Extension), by key of the gateway query. Releases that served
# InferenceModel objects name them `inference_model_*`. When a model has a
# series under the newer name, only that series is used.
GATEWAY_REQUESTS = "gateway_requests"
GATEWAY_REQUESTS_OLDER = "gateway_requests_older"
GATEWAY_REJECTED = "gateway_rejected"
GATEWAY_REJECTED_OLDER = "gateway_rejected_older"
GATEWAY_SERIES = {
    GATEWAY_REQUESTS: "inference_objective_request_total",
    GATEWAY_REQUESTS_OLDER: "inference_model_request_total",
    GATEWAY_REJECTED: "inference_objective_request_error_total",
    GATEWAY_REJECTED_OLDER: "inference_model_request_error_total",
}
# The picker counts a request in `*_request_total` only once it has chosen
# a pod for it. A request that it rejects for lack of capacity is counted
# in `*_request_error_total` alone, with one of these `error_code` values.
# They mean HTTP 429 when the pool is saturated, and 503 when it has no pod
# or a queued request timed out. Source: gateway-api-inference-extension,
# pkg/epp/handlers/server.go and pkg/epp/requestcontrol/director.go.
CAPACITY_ERROR_CODES = (
    "ResourceExhausted",
    "InferencePoolResourceExhausted",
    "ServiceUnavailable",
)
# The rates are grouped by the model that the picker sends a request to
# after any rewrite, not by the client's `model_name`. That is the name the
# vLLM pods serve, which the console uses for a model, so an alias split
# over two served models counts towards each of them.
GATEWAY_MODEL_LABEL = "target_model_name"
GATEWAY_RATE_WINDOW = "1m"
# Maximum plausible request rate of one model, in requests/s (an estimate,
# not a measured limit). A larger rate comes from a corrupt or foreign
# counter and would size the whole fleet for it.
MAX_GATEWAY_RATE = 100_000.0
# Number of left-out gateway rates whose reasons one warning lists.
MAX_LOGGED_PROBLEMS = 5

# Gauges read as their one-minute peak, by key.
PEAK_SERIES = {
    KV_NEW: metrics.KV_NAMES[0],
    KV_OLD: metrics.KV_NAMES[1],
    "num_requests_waiting": metrics.WAITING,
    "num_requests_running": metrics.RUNNING,
}
# Counters read as their latest total, summed over other labels such as
# `finished_reason`, by PodMetrics field.
COUNTER_SERIES = {
    "prompt_tokens_total": metrics.PROMPT_TOKENS,
    "generation_tokens_total": metrics.GENERATION_TOKENS,
    "request_success_total": metrics.REQUEST_SUCCESS,
    "request_prompt_tokens_sum": metrics.REQUEST_PROMPT_TOKENS + "_sum",
    "request_prompt_tokens_count": metrics.REQUEST_PROMPT_TOKENS + "_count",
    "request_generation_tokens_sum": metrics.REQUEST_GENERATION_TOKENS + "_sum",
    "request_generation_tokens_count": metrics.REQUEST_GENERATION_TOKENS + "_count",
}
# Series whose newest sample dates a pod's data (the required gauges), by key.
FRESHNESS_SERIES = {
    "sample_time_waiting": metrics.WAITING,
    "sample_time_kv": metrics.KV_NAMES[0],
    "sample_time_kv_older": metrics.KV_NAMES[1],
}

# Prometheus's own series per target: 1 when its last scrape succeeded. It
# distinguishes a pod that Prometheus does not scrape from one without vLLM series.
UP_KEY = "scrape_up"

METRICS_SOURCES = ("scrape", "prometheus")
# Largest response body read from Prometheus. The joined query of a few
# thousand pods returns a few MB; a larger body is a wrong URL or a fault.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# The gauge that the console publishes at /metrics, read back for the status.
DESIRED_SERIES = "wva_desired_replicas"


class PrometheusQueryError(Exception):
    """A query that failed after its retries; `kind` is one of the error kinds."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class QueryResult:
    """Series of the joined query by key, then by (namespace, pod or pool name)."""

    evaluated_at: float
    series: dict[str, dict[tuple[str, str], float]]


def promql_string(text: str) -> str:
    """Quote `text` as a PromQL double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def regex_alternation(values: Iterable[str]) -> str:
    """Return an RE2 pattern that fully matches any of `values` and nothing else."""
    return "|".join(re.escape(value) for value in sorted(set(values)))


def target_namespace(target: ScrapeTarget) -> str:
    """Return the target's namespace, or "" when the cycle did not set one."""
    return target.namespace


def label_selector(targets: Sequence[ScrapeTarget]) -> str:
    """Return the matchers for the targets' pods and, when known, namespaces."""
    matchers = [f"pod=~{promql_string(regex_alternation(t.pod for t in targets))}"]
    namespaces = {target_namespace(t) for t in targets}
    if "" not in namespaces:
        pattern = regex_alternation(namespaces)
        matchers.insert(0, f"namespace=~{promql_string(pattern)}")
    return ", ".join(matchers)


def tagged(key: str, expression: str) -> str:
    """Add the FIELD_LABEL label with value `key` to every series of `expression`."""
    return f'label_replace({expression}, "{FIELD_LABEL}", "{key}", "", "")'


def pod_query(selector: str) -> str:
    """Build the joined PromQL query of every per-pod value for one cycle."""
    parts = []
    for key, series in PEAK_SERIES.items():
        peak = (
            f"max by (namespace, pod) "
            f"(max_over_time({series}{{{selector}}}[{PEAK_WINDOW}]))"
        )
        parts.append(tagged(key, peak))
    for name, series in COUNTER_SERIES.items():
        if name not in metrics.FIELDS:
            continue
        total = (
            f"sum by (namespace, pod) "
            f"(last_over_time({series}{{{selector}}}[{PEAK_WINDOW}]))"
        )
        parts.append(tagged(name, total))
    for key, series in FRESHNESS_SERIES.items():
        # timestamp() drops the metric name, so each name gets its own query.
        newest = f"min by (namespace, pod) (timestamp({series}{{{selector}}}))"
        parts.append(tagged(key, newest))
    parts.append(tagged(UP_KEY, f"max by (namespace, pod) (up{{{selector}}})"))
    return " or ".join(parts)


def pool_query(namespaces: Iterable[str]) -> str:
    """Build the query of the gateway's inference-pool averages, by pool."""
    known = sorted(set(namespaces) - {""})
    selector = ""
    if known:
        selector = f"{{namespace=~{promql_string(regex_alternation(known))}}}"
    parts = [
        tagged(name, f"max by (namespace, name) ({name}{selector})")
        for name in POOL_FIELDS
    ]
    return " or ".join(parts)


def gateway_query(namespaces: Iterable[str]) -> str:
    """Build the query of the gateway's request rates per served model.

    The query has one part per key of GATEWAY_SERIES, so it reads the
    admitted requests and the requests rejected for lack of capacity under
    both metric names.
    """
    known = sorted(set(namespaces) - {""})
    namespace_matchers = []
    if known:
        namespace_matchers.append(
            f"namespace=~{promql_string(regex_alternation(known))}"
        )
    codes = promql_string(regex_alternation(CAPACITY_ERROR_CODES))
    parts = []
    for key, series in GATEWAY_SERIES.items():
        matchers = list(namespace_matchers)
        if key in (GATEWAY_REJECTED, GATEWAY_REJECTED_OLDER):
            matchers.append(f"error_code=~{codes}")
        selector = "{" + ", ".join(matchers) + "}" if matchers else ""
        rate = (
            f"sum by ({GATEWAY_MODEL_LABEL}) "
            f"(rate({series}{selector}[{GATEWAY_RATE_WINDOW}]))"
        )
        parts.append(tagged(key, rate))
    return " or ".join(parts)


def gateway_rates(payload: Any) -> tuple[dict[str, float], list[str]]:
    """Compute the request rate per served model and why others were left out.

    A model's rate is its admitted plus its rejected requests per second,
    each from the newer metric name when the model has a series of it. A
    model with rejected requests only, because no replica could take any,
    has their rate. A model is left out when a part is NaN, infinite or
    negative, or when the sum is above MAX_GATEWAY_RATE. Series without a
    model name are skipped, because older pickers reject a request before
    they record its model, and so are series of an unknown key. Raises
    PrometheusQueryError on an invalid response.
    """
    by_key: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    for labels, value, _ in vector_rows(payload):
        model = labels.get(GATEWAY_MODEL_LABEL, "")
        key = labels.get(FIELD_LABEL, "")
        if not model or key not in GATEWAY_SERIES:
            continue
        if model in by_key.setdefault(key, {}):
            problems.append(f"{model}: more than one {GATEWAY_SERIES[key]} series")
        by_key[key][model] = value
    models = set().union(*by_key.values()) if by_key else set()
    rates: dict[str, float] = {}
    for model in sorted(models):
        parts = []
        for newer, older in (
            (GATEWAY_REQUESTS, GATEWAY_REQUESTS_OLDER),
            (GATEWAY_REJECTED, GATEWAY_REJECTED_OLDER),
        ):
            value = by_key.get(newer, {}).get(model)
            if value is None:
                value = by_key.get(older, {}).get(model)
            parts.append(value)
        invalid = [
            value
            for value in parts
            if value is not None and not (math.isfinite(value) and value >= 0)
        ]
        if invalid:
            problems.append(
                f"{model}: rate {invalid[0]!r} is NaN, infinite or negative"
            )
            continue

        admitted, rejected = parts
        total = (admitted or 0.0) + (rejected or 0.0)
        if total > MAX_GATEWAY_RATE:
            problems.append(
                f"{model}: {total:g} requests/s is above the maximum of "
                f"{MAX_GATEWAY_RATE:g}"
            )
            continue
        rates[model] = total
    return rates, problems


def check_value(name: str, value: float) -> str:
    """Return the sample status of one value: ok, non_finite or out_of_range."""
    if not math.isfinite(value):
        return metrics.NON_FINITE
    if value < 0 or (name == "kv_cache_usage" and value > 1.0):
        return metrics.OUT_OF_RANGE
    return metrics.OK


def vector_rows(payload: Any) -> list[tuple[dict[str, str], float, float]]:
    """Return (labels, value, evaluation time) per series of an instant-vector response.

    Raises PrometheusQueryError when the response is not a successful vector.
    """
    if not isinstance(payload, dict) or payload.get("status") != "success":
        error = payload.get("error", "") if isinstance(payload, dict) else ""
        raise PrometheusQueryError(
            PROMETHEUS_ERROR, f"query did not succeed: {error or payload!r}"
        )
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise PrometheusQueryError(
            PROMETHEUS_ERROR, "the response is not an instant vector"
        )
    result = data.get("result")
    if result is None:
        result = []
    if not isinstance(result, list):
        raise PrometheusQueryError(
            PROMETHEUS_ERROR, f"the vector's result is not a list: {result!r:.200}"
        )
    rows = []
    for item in result:
        try:
            labels = dict(item["metric"])
            if not all(isinstance(v, str) for v in labels.values()):
                raise TypeError("label values must be strings")
            stamp, text = item["value"]
            rows.append((labels, float(text), float(stamp)))
        except (KeyError, TypeError, ValueError) as exc:
            raise PrometheusQueryError(
                PROMETHEUS_ERROR, f"invalid series in the response: {item!r}"
            ) from exc
    return rows


def parse_vector(payload: Any) -> QueryResult:
    """Group an instant-vector response by FIELD_LABEL and (namespace, pod or name)."""
    series: dict[str, dict[tuple[str, str], float]] = {}
    evaluated_at = math.nan
    for labels, value, stamp in vector_rows(payload):
        evaluated_at = stamp
        key = labels.get(FIELD_LABEL, "")
        owner = (labels.get("namespace", ""), labels.get("pod", labels.get("name", "")))
        series.setdefault(key, {})[owner] = value
    return QueryResult(evaluated_at=evaluated_at, series=series)


class PrometheusMetricsSource:
    """Reads every target's metrics from Prometheus in one query per cycle.

    Each HTTP request has `timeout_s` for the connection and for each read.
    A connection error, a timeout, HTTP 429 or a 5xx response of the pod
    query is retried up to `retries` times with a doubling backoff from
    `backoff_s`. The pool and gateway queries that follow get one attempt
    each, because the cycle can go on without them. So a scrape ends within
    about `(retries + 3) * 2 * timeout_s` plus the backoff.
    After each scrape, `pools` contains the gateway's inference-pool
    averages by "namespace/name", and `gateway_request_rates` the gateway's
    request rate per served model in requests/s. Each is empty when the
    gateway exports none or its query fails.
    """

    # Series are matched by namespace and pod name, so pods need no address.
    needs_endpoint = False

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        *,
        retries: int = 2,
        backoff_s: float = 0.5,
        stale_after_s: float = 60.0,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = checked_url(url)
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries!r}")
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_s = backoff_s
        self.stale_after_s = stale_after_s
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep
        self.pools: dict[str, dict[str, float | None]] = {}
        self.gateway_request_rates: dict[str, float] = {}

    def scrape(self, targets: Sequence[ScrapeTarget]) -> dict[str, PodMetrics]:
        """Return one PodMetrics per target, keyed by pod name."""
        if not targets:
            return {}
        at = self.clock()
        query = pod_query(label_selector(targets))
        try:
            result = parse_vector(self.query(query))
        except PrometheusQueryError as exc:
            logger.error(
                "Prometheus query for %d pods failed (%s): %s",
                len(targets),
                exc.kind,
                exc,
            )
            self.pools = {}
            self.gateway_request_rates = {}
            return {
                target.pod: metrics.failed_sample(target.pod, at, exc.kind, str(exc))
                for target in targets
            }
        namespaces = {target_namespace(t) for t in targets}
        self.pools = self.read_pools(namespaces)
        self.gateway_request_rates = self.read_gateway_rates(namespaces)
        return {target.pod: self.pod_metrics(target, result, at) for target in targets}

    def read_pools(
        self, namespaces: Iterable[str]
    ) -> dict[str, dict[str, float | None]]:
        """Return the inference-pool averages by "namespace/name", {} on failure."""
        try:
            result = parse_vector(self.query(pool_query(namespaces), retries=0))
        except PrometheusQueryError as exc:
            logger.warning("reading the inference-pool metrics failed: %s", exc)
            return {}
        pools: dict[str, dict[str, float | None]] = {}
        for name in POOL_FIELDS:
            for (namespace, pool), value in result.series.get(name, {}).items():
                entry = pools.setdefault(f"{namespace}/{pool}", {})
                entry[name] = value if math.isfinite(value) else None
        return pools

    def read_gateway_rates(self, namespaces: Iterable[str]) -> dict[str, float]:
        """Return the gateway's request rate by served model, {} on failure."""
        try:
            payload = self.query(gateway_query(namespaces), retries=0)
            rates, problems = gateway_rates(payload)
        except PrometheusQueryError as exc:
            logger.warning("reading the gateway's request rates failed: %s", exc)
            return {}
        if problems:
            # One warning per scrape, so that many broken counters cannot flood the log.
            shown = "; ".join(problems[:MAX_LOGGED_PROBLEMS])
            more = len(problems) - MAX_LOGGED_PROBLEMS
            logger.warning(
                "left out %d gateway request rates: %s%s",
                len(problems),
                shown,
                f" and {more} more" if more > 0 else "",
            )
        return rates

    def pod_metrics(
        self, target: ScrapeTarget, result: QueryResult, at: datetime
    ) -> PodMetrics:
        """Build one target's PodMetrics from the joined query's series."""
        namespace = target_namespace(target)
        if not namespace:
            found = {
                owner[0]
                for values in result.series.values()
                for owner in values
                if owner[1] == target.pod
            }
            if len(found) > 1:
                detail = (
                    f"pod {target.pod} has series in namespaces "
                    f"{', '.join(sorted(found))}; the target names none"
                )
                logger.warning("%s", detail)
                return metrics.failed_sample(target.pod, at, AMBIGUOUS_POD, detail)
            namespace = found.pop() if found else ""
        owner = (namespace, target.pod)
        values = {
            key: by_owner[owner]
            for key, by_owner in result.series.items()
            if owner in by_owner and key != UP_KEY
        }
        if not values:
            kind, detail = missing_series_cause(
                target.pod, namespace, result.series.get(UP_KEY, {}).get(owner)
            )
            logger.log(target.failure_level, "%s", detail)
            return metrics.failed_sample(target.pod, at, kind, detail)
        age_s = sample_age(values, result.evaluated_at)
        if age_s is None or age_s > self.stale_after_s:
            return stale_sample(target, at, age_s)
        return fill_fields(target.pod, values, at)

    def read_desired_replicas(self) -> dict[tuple[str, str], list[float]]:
        """Return the stored `wva_desired_replicas` values by (namespace, variant).

        A scrape that adds its own `namespace` target label moves the
        console's label to `exported_namespace`, which then takes precedence.
        Raises PrometheusQueryError when the query fails.
        """
        stored: dict[tuple[str, str], list[float]] = {}
        for labels, value, _ in vector_rows(self.query(DESIRED_SERIES)):
            namespace = labels.get("exported_namespace") or labels.get("namespace", "")
            key = (namespace, labels.get("variant_name", ""))
            stored.setdefault(key, []).append(value)
        return stored

    def query(self, expression: str, retries: int | None = None) -> Any:
        """POST one instant query and return the decoded JSON response.

        `retries` overrides the source's retry count. Raises PrometheusQueryError once
        the retries are used up or on a response that retrying cannot fix
        (HTTP 4xx other than 429, invalid JSON).
        """
        endpoint = self.url + "/api/v1/query"
        attempts = (self.retries if retries is None else retries) + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post(endpoint, expression)
            except PrometheusQueryError as exc:
                if exc.kind == PROMETHEUS_ERROR or attempt == attempts:
                    raise
                delay = self.backoff_s * 2 ** (attempt - 1)
                logger.warning(
                    "Prometheus query attempt %d of %d failed (%s): %s; "
                    "retrying in %.2f s",
                    attempt,
                    attempts,
                    exc.kind,
                    exc,
                    delay,
                )
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _post(self, endpoint: str, expression: str) -> Any:
        """POST one query; the whole exchange must end within 2 * timeout_s."""
        shown = redacted(endpoint)
        deadline = time.monotonic() + 2 * self.timeout_s
        with requests.Session() as session:
            # Proxy variables from the environment must not reroute the query.
            session.trust_env = False
            try:
                response = session.post(
                    endpoint,
                    data={"query": expression},
                    timeout=(self.timeout_s, self.timeout_s),
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    body = read_body(response, deadline, shown, self.timeout_s)
                finally:
                    # A body cut short by the deadline or the size cap leaves
                    # the connection unusable, so it is closed here.
                    response.close()
            except requests.Timeout as exc:
                raise PrometheusQueryError(
                    PROMETHEUS_TIMEOUT,
                    f"{shown} did not respond within {self.timeout_s:g} s",
                ) from exc
            except requests.RequestException as exc:
                raise PrometheusQueryError(
                    PROMETHEUS_UNAVAILABLE,
                    f"{shown} is unreachable: {exc}",
                ) from exc
        code = response.status_code
        if code == 429 or code >= 500:
            raise PrometheusQueryError(
                PROMETHEUS_UNAVAILABLE, f"HTTP {code} from {shown}"
            )
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise PrometheusQueryError(
                PROMETHEUS_ERROR, f"HTTP {code} from {shown} with a non-JSON body"
            ) from exc
        if code != 200:
            error = payload.get("error", "") if isinstance(payload, dict) else ""
            raise PrometheusQueryError(
                PROMETHEUS_ERROR, f"HTTP {code} from {shown}: {str(error)[:200]}"
            )
        return payload


def read_body(
    response: requests.Response, deadline: float, shown: str, timeout_s: float
) -> bytes:
    """Read a streamed body; raise PrometheusQueryError past `deadline` or the cap.

    The read timeout of `requests` applies to each socket read, so a server
    that sends a byte at a time would otherwise hold the cycle indefinitely.
    """
    chunks: list[bytes] = []
    size = 0
    # urllib3's read1 returns after at most one socket read (read() waits
    # for the full amount), so the deadline is checked as the data arrives.
    raw = response.raw
    while chunk := raw.read1(65536, decode_content=True):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise PrometheusQueryError(
                PROMETHEUS_ERROR,
                f"the response of {shown} is larger than {MAX_RESPONSE_BYTES} bytes",
            )
        if time.monotonic() > deadline:
            raise PrometheusQueryError(
                PROMETHEUS_TIMEOUT,
                f"the response of {shown} did not end within {2 * timeout_s:g} s",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def redacted(url: str) -> str:
    """Return `url` without a user name or password, for messages and logs."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host).geturl()


def missing_series_cause(pod: str, namespace: str, up: float | None) -> tuple[str, str]:
    """Return the error kind and detail of a pod without vLLM series.

    The pod's `up` series distinguishes the three causes: Prometheus does not
    scrape the pod, its scrapes fail, or it scrapes the pod and finds no
    vLLM metric under the names this console reads.
    """
    where = f"pod {pod} in namespace {namespace or '(any)'}"
    if up is None:
        return NO_SERIES, (
            f"Prometheus has no series for {where} within the last {PEAK_WINDOW}; "
            "check that its scrape configuration discovers the pod"
        )
    if up < 1:
        return SCRAPE_FAILED, f"Prometheus fails to scrape {where} (up is {up:g})"
    return METRIC_NOT_FOUND, (
        f"Prometheus scrapes {where} but stores none of its vLLM series; "
        "check the metric names the server exports"
    )


def sample_age(values: dict[str, float], evaluated_at: float) -> float | None:
    """Return the age in seconds of a pod's data, None without a current sample.

    The age is that of the oldest of the newest samples of FRESHNESS_SERIES.
    """
    stamps = [values[key] for key in FRESHNESS_SERIES if key in values]
    if not stamps or not all(math.isfinite(stamp) for stamp in stamps):
        return None
    return max(0.0, evaluated_at - min(stamps))


def stale_sample(target: ScrapeTarget, at: datetime, age_s: float | None) -> PodMetrics:
    """Build the sample of a pod whose newest data is too old: every field stale."""
    if age_s is None:
        # Prometheus writes a staleness marker after a failed scrape or once
        # the target is gone, so the instant selector finds no current sample
        # while the one-minute peaks still contain older ones.
        detail = f"pod {target.pod} has no current sample in Prometheus"
    else:
        detail = f"pod {target.pod}'s newest sample in Prometheus is {age_s:.0f} s old"
    logger.log(target.failure_level, "%s", detail)
    return PodMetrics(
        pod=target.pod,
        sampled_at=at,
        status=metrics.STALE,
        field_status=dict.fromkeys(metrics.FIELDS, metrics.STALE),
        detail=detail,
    )


def fill_fields(pod: str, values: dict[str, float], at: datetime) -> PodMetrics:
    """Build a PodMetrics with a value and a status per field from one pod's series."""
    kv_key = ""
    if KV_NEW in values:
        kv_key = KV_NEW
    elif KV_OLD in values:
        kv_key = KV_OLD

    sample = PodMetrics(
        pod=pod, sampled_at=at, kv_metric_name=PEAK_SERIES.get(kv_key, "")
    )

    details: list[str] = []
    sources = {name: name for name in metrics.FIELDS}
    if kv_key:
        sources["kv_cache_usage"] = kv_key
    for name, key in sources.items():
        if name == "kv_cache_usage" and not kv_key:
            sample.field_status[name] = metrics.KV_METRIC_NOT_FOUND
            details.append("neither " + " nor ".join(metrics.KV_NAMES) + " is stored")
            continue
        if key not in values:
            sample.field_status[name] = metrics.MISSING
            details.append(f"{name} has no series")
            continue
        status = check_value(name, values[key])
        sample.field_status[name] = status
        if status == metrics.OK:
            setattr(sample, name, values[key])
        else:
            details.append(f"{name}={values[key]!r}")

    sample.status = next(
        (
            sample.field_status[name]
            for name in metrics.REQUIRED_FIELDS
            if sample.field_status[name] != metrics.OK
        ),
        metrics.OK,
    )
    sample.detail = "; ".join(details)
    if sample.status != metrics.OK:
        logger.warning("pod %s has invalid metrics: %s", pod, sample.detail)
    return sample


def checked_url(url: str) -> str:
    """Return the base URL without a trailing slash; raise ValueError if invalid."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"the Prometheus URL must be http:// or https:// with a host, got {url!r}"
        )
    return url.rstrip("/")


def metrics_source_from_settings(
    clock: Callable[[], datetime] | None = None,
) -> metrics.MetricsSource:
    """Build the metrics source that WVA_METRICS_SOURCE selects.

    Raises ImproperlyConfigured naming the setting and its value when the
    source is unknown or the Prometheus URL or timeout is invalid.
    """
    kind = settings.WVA_METRICS_SOURCE
    if kind == "scrape":
        return metrics.ScrapeMetricsSource(clock=clock)
    if kind != "prometheus":
        raise ImproperlyConfigured(
            f"WVA_METRICS_SOURCE must be one of {', '.join(METRICS_SOURCES)}, "
            f"got {kind!r}"
        )
    url = settings.WVA_PROMETHEUS_URL
    timeout_s = settings.WVA_PROMETHEUS_TIMEOUT_S
    try:
        return PrometheusMetricsSource(url, float(timeout_s), clock=clock)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"WVA_METRICS_SOURCE=prometheus needs a valid WVA_PROMETHEUS_URL "
            f"(got {url!r}) and a positive WVA_PROMETHEUS_TIMEOUT_S "
            f"(got {timeout_s!r}): {exc}"
        ) from exc
