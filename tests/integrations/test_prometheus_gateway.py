"""The gateway's request rates per model, read by PrometheusMetricsSource.

The first tests run a real Prometheus that scrapes a loopback exporter of
the endpoint picker's request counters. Each counter grows at a fixed rate,
and the rate window is shortened to 5 s so that rate() matches those rates
within seconds of the start. The other tests use a loopback server that returns
canned query results, for values and failures a real server does not give.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.integrations.prometheus_harness import (
    EXPOSITION_TYPE,
    LoopbackServer,
    PrometheusServer,
    QuietHandler,
    prometheus_binary,
    vector_response,
)
from wva_web.integrations import metrics, prometheus
from wva_web.integrations.metrics import ScrapeTarget

NAMESPACE = "llm"
POD = "llama-8b-h100-0"
TARGETS = [ScrapeTarget(pod=POD, ip="127.0.0.1", port=1, namespace=NAMESPACE)]
RATE_WINDOW = "5s"

# (series, labels, requests/s) of the exporter. `llama-8b` reaches the
# gateway under the client's alias `llama`. `both` has series under both
# metric names, and `granite` only under the older one.
COUNTERS = (
    (
        "inference_objective_request_total",
        'model_name="llama",target_model_name="llama-8b"',
        6.0,
    ),
    (
        "inference_objective_request_error_total",
        'model_name="llama",target_model_name="llama-8b",'
        'error_code="ResourceExhausted"',
        3.0,
    ),
    (
        "inference_objective_request_error_total",
        'model_name="llama",target_model_name="llama-8b",'
        'error_code="ServiceUnavailable"',
        1.0,
    ),
    # ModelServerError is counted in request_total too, and BadRequest is
    # no demand for replicas, so both are left out.
    (
        "inference_objective_request_error_total",
        'model_name="llama",target_model_name="llama-8b",error_code="ModelServerError"',
        20.0,
    ),
    (
        "inference_objective_request_error_total",
        'model_name="llama",target_model_name="llama-8b",error_code="BadRequest"',
        40.0,
    ),
    (
        "inference_objective_request_total",
        'model_name="both",target_model_name="both"',
        2.0,
    ),
    (
        "inference_model_request_total",
        'model_name="both",target_model_name="both"',
        7.0,
    ),
    (
        "inference_model_request_total",
        'model_name="granite",target_model_name="granite"',
        4.0,
    ),
    (
        "inference_model_request_error_total",
        'model_name="granite",target_model_name="granite",'
        'error_code="InferencePoolResourceExhausted"',
        0.5,
    ),
    # Older pickers reject a request before they record its model.
    (
        "inference_model_request_error_total",
        'model_name="",target_model_name="",'
        'error_code="InferencePoolResourceExhausted"',
        9.0,
    ),
)


class CounterExporter(LoopbackServer):
    """Loopback /metrics endpoint whose counters grow at fixed rates."""

    def __init__(self) -> None:
        started = time.time()
        exporter = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = exporter.text(time.time() - started).encode()
                self.send_body(200, EXPOSITION_TYPE, body)

        super().__init__(Handler)

    @staticmethod
    def text(elapsed_s: float) -> str:
        # Counters start at 1000, so rate() does not stop its extrapolation
        # at a zero crossing just before the first sample.
        lines = [
            f"{series}{{{labels}}} {1000 + rate * elapsed_s:.3f}"
            for series, labels, rate in COUNTERS
        ]
        return "\n".join(lines) + "\n"


def gateway_config(address: str) -> str:
    """Return a Prometheus configuration that scrapes `address` each second."""
    return (
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: gateway\n"
        "    static_configs:\n"
        f"      - targets: ['{address}']\n"
        f"        labels: {{namespace: {NAMESPACE}}}\n"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    prometheus_binary()
    exporter = CounterExporter().start()
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    prom = PrometheusServer(workdir, gateway_config(exporter.address))
    try:
        prom.start()
        prom.wait_until("inference_objective_request_total")
        # Wait past one full rate window of samples, at one scrape a second.
        time.sleep(7.0)
        yield prom
    finally:
        prom.stop()
        exporter.stop()


@pytest.fixture
def short_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "GATEWAY_RATE_WINDOW", RATE_WINDOW)


@pytest.mark.usefixtures("short_window")
def test_rates_by_served_model(server: PrometheusServer) -> None:
    # When one scrape runs while the gateway exports its counters.
    source = prometheus.PrometheusMetricsSource(server.url, timeout_s=5.0)
    source.scrape(TARGETS)
    rates = source.gateway_request_rates
    # Then each served model has its admitted plus capacity-rejected rate.
    assert set(rates) == {"llama-8b", "both", "granite"}
    assert rates["llama-8b"] == pytest.approx(6.0 + 3.0 + 1.0, rel=0.05)


@pytest.mark.usefixtures("short_window")
def test_newer_name_preferred_older_fallback(server: PrometheusServer) -> None:
    source = prometheus.PrometheusMetricsSource(server.url, timeout_s=5.0)
    source.scrape(TARGETS)
    rates = source.gateway_request_rates
    # Then a model with both names reads the newer one alone.
    assert rates["both"] == pytest.approx(2.0, rel=0.05)
    # And a model with only the older names reads those.
    assert rates["granite"] == pytest.approx(4.0 + 0.5, rel=0.05)


@pytest.mark.usefixtures("short_window")
def test_other_namespace_reads_no_rates(server: PrometheusServer) -> None:
    # Given targets in a namespace where the gateway does not run.
    elsewhere = [ScrapeTarget(pod=POD, ip="127.0.0.1", port=1, namespace="other")]
    source = prometheus.PrometheusMetricsSource(server.url, timeout_s=5.0)
    source.scrape(elsewhere)
    # Then no rate is read.
    assert source.gateway_request_rates == {}


def test_default_window_query_accepted(server: PrometheusServer) -> None:
    # The query with the one-minute window is valid PromQL. The young series
    # make its values smaller than the rates, so only the models are checked.
    source = prometheus.PrometheusMetricsSource(server.url, timeout_s=5.0)
    source.scrape(TARGETS)
    assert set(source.gateway_request_rates) == {"llama-8b", "both", "granite"}


# Canned query results.


def pod_rows(at: float) -> list[tuple[dict[str, str], str]]:
    """Return rows of the joined pod query for POD, each value valid and current."""
    values = {
        prometheus.KV_NEW: "0.5",
        "num_requests_waiting": "2",
        "num_requests_running": "8",
        "prompt_tokens_total": "12000",
        "generation_tokens_total": "3000",
        "request_success_total": "40",
        "request_prompt_tokens_sum": "12000",
        "request_prompt_tokens_count": "40",
        "request_generation_tokens_sum": "3000",
        "request_generation_tokens_count": "40",
        "sample_time_waiting": str(at),
        "sample_time_kv": str(at),
        prometheus.UP_KEY: "1",
    }
    return [
        (
            {prometheus.FIELD_LABEL: key, "namespace": NAMESPACE, "pod": POD},
            value,
        )
        for key, value in values.items()
    ]


def gateway_row(key: str, model: object, value: str) -> tuple[dict[str, Any], str]:
    """Return one series of the gateway query, `model` being its label value."""
    return {prometheus.FIELD_LABEL: key, prometheus.GATEWAY_MODEL_LABEL: model}, value


class CannedPrometheus(LoopbackServer):
    """Loopback /api/v1/query that returns canned pod and gateway results.

    `gateway` is the list of gateway rows, or an (HTTP status, error) pair
    that the gateway query fails with.
    """

    def __init__(self) -> None:
        self.gateway: list[tuple[dict[str, Any], str]] | tuple[int, str] = []
        self.queries: list[str] = []
        canned = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                code, payload = canned.respond(form["query"][0])
                self.send_body(code, "application/json", json.dumps(payload).encode())

        super().__init__(Handler)

    def respond(self, query: str) -> tuple[int, dict[str, Any]]:
        self.queries.append(query)
        at = time.time()
        if "inference_objective_request_total" in query:
            if isinstance(self.gateway, tuple):
                code, error = self.gateway
                return code, {"status": "error", "error": error}
            return 200, vector_response(self.gateway, at)
        if "inference_pool_average" in query:
            return 200, vector_response([], at)
        return 200, vector_response(pod_rows(at), at)


@pytest.fixture
def canned() -> Iterator[CannedPrometheus]:
    server = CannedPrometheus().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_source(
    canned: CannedPrometheus,
) -> Callable[[], prometheus.PrometheusMetricsSource]:
    def make() -> prometheus.PrometheusMetricsSource:
        return prometheus.PrometheusMetricsSource(
            canned.url, timeout_s=2.0, retries=1, backoff_s=0.0, sleep=lambda _: None
        )

    return make


def test_nan_and_negative_rates_left_out(canned, make_source) -> None:
    # Given a NaN rate for one model, a negative one for another, and
    # an admitted rate that is valid while the rejected one is NaN.
    canned.gateway = [
        gateway_row(prometheus.GATEWAY_REQUESTS, "good", "5"),
        gateway_row(prometheus.GATEWAY_REQUESTS, "nan", "NaN"),
        gateway_row(prometheus.GATEWAY_REQUESTS, "negative", "-1"),
        gateway_row(prometheus.GATEWAY_REQUESTS, "half", "3"),
        gateway_row(prometheus.GATEWAY_REJECTED, "half", "NaN"),
    ]
    source = make_source()
    source.scrape(TARGETS)
    # Then only the valid model has a rate, and none is 0.
    assert source.gateway_request_rates == {"good": 5.0}


def test_rejected_only_model_has_rate(canned, make_source) -> None:
    # Given a model whose every request was rejected, so it has no
    # admitted series, and a series without a model name.
    canned.gateway = [
        gateway_row(prometheus.GATEWAY_REJECTED, "cold", "2.5"),
        gateway_row(prometheus.GATEWAY_REJECTED_OLDER, "", "9"),
    ]
    source = make_source()
    source.scrape(TARGETS)
    # Then the rejected requests are that model's rate.
    assert source.gateway_request_rates == {"cold": 2.5}


@pytest.mark.parametrize(
    "failure",
    [(400, "invalid PromQL"), (503, "overloaded")],
    ids=["http_400", "http_503"],
)
def test_failed_gateway_query_leaves_pods(canned, make_source, failure) -> None:
    # Given one scrape with a working gateway query, for comparison.
    canned.gateway = [gateway_row(prometheus.GATEWAY_REQUESTS, "llama-8b", "5")]
    source = make_source()
    expected = source.scrape(TARGETS)[POD]
    assert source.gateway_request_rates == {"llama-8b": 5.0}
    # When the gateway query fails on the next scrape.
    canned.gateway = failure
    sample = source.scrape(TARGETS)[POD]
    # Then the rates are empty and the pod reads as before.
    assert source.gateway_request_rates == {}
    assert sample.status == metrics.OK
    assert sample.error_kind == ""
    for name in metrics.FIELDS:
        assert sample.field_status[name] == expected.field_status[name], name
        assert getattr(sample, name) == getattr(expected, name), name


def test_failed_pod_query_clears_rates(canned, make_source, monkeypatch) -> None:
    # Given rates read by one scrape.
    canned.gateway = [gateway_row(prometheus.GATEWAY_REQUESTS, "llama-8b", "5")]
    source = make_source()
    source.scrape(TARGETS)
    # When the pod query fails on the next one.
    monkeypatch.setattr(
        canned, "respond", lambda query: (500, {"status": "error", "error": "down"})
    )
    sample = source.scrape(TARGETS)[POD]
    # Then the pod is missing and no rate of the earlier scrape is kept.
    assert sample.status == metrics.MISSING
    assert source.gateway_request_rates == {}


def test_left_out_rates_logged_once(
    canned: CannedPrometheus,
    make_source: Callable[[], prometheus.PrometheusMetricsSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given seven models whose rates are NaN.
    canned.gateway = [
        gateway_row(prometheus.GATEWAY_REQUESTS, f"model-{i}", "NaN") for i in range(7)
    ]
    # When one scrape reads them.
    with caplog.at_level("WARNING", logger=prometheus.logger.name):
        make_source().scrape(TARGETS)
    # Then one warning counts them all and lists the first five.
    warnings = [r.getMessage() for r in caplog.records if "gateway" in r.getMessage()]
    assert len(warnings) == 1
    assert "left out 7 gateway request rates" in warnings[0]
    assert "model-4: rate nan" in warnings[0]
    assert "model-5" not in warnings[0]
    assert warnings[0].endswith("and 2 more")


def test_query_restricted_to_namespaces() -> None:
    query = prometheus.gateway_query(["llm", "team-b", ""])
    assert 'namespace=~"llm|team\\\\-b"' in query
    assert "sum by (target_model_name)" in query
    assert 'error_code=~"InferencePoolResourceExhausted|ResourceExhausted|' in query
    assert query.count(" or ") == len(prometheus.GATEWAY_SERIES) - 1
    unrestricted = prometheus.gateway_query([""])
    assert "namespace" not in unrestricted


# -- values that must not size a fleet -------------------------------------


def rates_of(
    rows: list[tuple[dict[str, Any], str]],
) -> tuple[dict[str, float], list[str]]:
    """Run gateway_rates on a vector response with `rows`."""
    return prometheus.gateway_rates(vector_response(rows, 1000.0))


def test_implausible_gateway_rate_left_out() -> None:
    rates, problems = rates_of(
        [
            gateway_row(prometheus.GATEWAY_REQUESTS, "huge", "1e300"),
            gateway_row(prometheus.GATEWAY_REQUESTS, "fine", "12.5"),
        ]
    )
    assert rates == {"fine": 12.5}
    assert any("huge: 1e+300 requests/s" in p for p in problems)


def test_negative_part_left_out() -> None:
    rates, problems = rates_of(
        [
            gateway_row(prometheus.GATEWAY_REQUESTS, "m", "10"),
            gateway_row(prometheus.GATEWAY_REJECTED, "m", "-7"),
        ]
    )
    assert rates == {}
    assert any("-7.0" in p for p in problems)


def test_unknown_part_gives_no_rate() -> None:
    rates, problems = rates_of([gateway_row("other", "m", "10")])
    assert rates == {}
    assert problems == []


def test_duplicate_series_reported() -> None:
    _, problems = rates_of(
        [
            gateway_row(prometheus.GATEWAY_REQUESTS, "m", "50"),
            gateway_row(prometheus.GATEWAY_REQUESTS, "m", "2"),
        ]
    )
    assert any("more than one" in p for p in problems)


def vector_with_result(result: object) -> dict[str, object]:
    """Return a successful vector response with `result` unchecked."""
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.mark.parametrize(
    "payload",
    [
        vector_response([gateway_row(prometheus.GATEWAY_REQUESTS, 7, "1")], 1000.0),
        vector_response([gateway_row(prometheus.GATEWAY_REQUESTS, ["a"], "1")], 1000.0),
        vector_with_result(5),
        vector_with_result(0),
        vector_with_result(""),
    ],
    ids=[
        "int-label",
        "list-label",
        "result-not-list",
        "result-zero",
        "result-empty-string",
    ],
)
def test_malformed_response_fails_query(payload: dict[str, object]) -> None:
    with pytest.raises(prometheus.PrometheusQueryError):
        prometheus.gateway_rates(payload)


def test_null_result_reads_empty() -> None:
    rates, problems = prometheus.gateway_rates(vector_with_result(None))
    assert rates == {}
    assert problems == []
