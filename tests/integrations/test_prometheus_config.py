"""Settings of the Prometheus metric source and its reading of query responses.

These tests need no Prometheus server: they check the factory behind
WVA_METRICS_SOURCE, the PromQL matchers and the statuses built from a
query response.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.integrations.prometheus_harness import vector_response
from wva_web.control.cycle import CycleService
from wva_web.integrations import metrics, prometheus
from wva_web.integrations.metrics import ScrapeTarget

AT = datetime(2026, 1, 1, tzinfo=UTC)
NOW_S = 1_800_000_000.0


@dataclass(frozen=True)
class NamespacedTarget(ScrapeTarget):
    namespace: str = ""


def pod_rows(
    pod: str, namespace: str = "llm", age_s: float = 1.0, **values: str
) -> list[tuple[dict[str, str], str]]:
    """Rows of one pod: a fresh sample time and the given field values."""
    labels = {"namespace": namespace, "pod": pod}
    rows = [({**labels, "wva_field": "sample_time_waiting"}, str(NOW_S - age_s))]
    for key, value in values.items():
        rows.append(({**labels, "wva_field": key}, value))
    return rows


def read(target: ScrapeTarget, rows: list[tuple[dict[str, str], str]]) -> Any:
    source = prometheus.PrometheusMetricsSource("http://127.0.0.1:1")
    return source.pod_metrics(
        target, prometheus.parse_vector(vector_response(rows, NOW_S)), AT
    )


def test_factory_default_is_scrape(settings: Any) -> None:
    settings.WVA_METRICS_SOURCE = "scrape"
    source = prometheus.metrics_source_from_settings()
    assert isinstance(source, metrics.ScrapeMetricsSource)


def test_factory_builds_prometheus_source(settings: Any) -> None:
    settings.WVA_METRICS_SOURCE = "prometheus"
    settings.WVA_PROMETHEUS_URL = "http://prometheus.monitoring:9090/"
    settings.WVA_PROMETHEUS_TIMEOUT_S = 2.5
    source = prometheus.metrics_source_from_settings()
    assert isinstance(source, prometheus.PrometheusMetricsSource)
    assert source.url == "http://prometheus.monitoring:9090"
    assert source.timeout_s == 2.5


def test_cycle_uses_factory(settings: Any) -> None:
    settings.WVA_METRICS_SOURCE = "prometheus"
    settings.WVA_PROMETHEUS_URL = "http://127.0.0.1:9090"
    service = CycleService()
    assert isinstance(service.metrics_source, prometheus.PrometheusMetricsSource)


def test_factory_rejects_unknown_source(settings: Any) -> None:
    settings.WVA_METRICS_SOURCE = "graphite"
    with pytest.raises(ImproperlyConfigured, match="'graphite'"):
        prometheus.metrics_source_from_settings()


def test_factory_rejects_missing_url(settings: Any) -> None:
    settings.WVA_METRICS_SOURCE = "prometheus"
    settings.WVA_PROMETHEUS_URL = ""
    with pytest.raises(ImproperlyConfigured, match="WVA_PROMETHEUS_URL"):
        prometheus.metrics_source_from_settings()


def test_factory_rejects_url_without_scheme(settings: Any) -> None:
    settings.WVA_METRICS_SOURCE = "prometheus"
    settings.WVA_PROMETHEUS_URL = "prometheus:9090"
    with pytest.raises(ImproperlyConfigured, match="'prometheus:9090'"):
        prometheus.metrics_source_from_settings()


def test_factory_rejects_zero_timeout(settings: Any) -> None:
    settings.WVA_METRICS_SOURCE = "prometheus"
    settings.WVA_PROMETHEUS_URL = "http://127.0.0.1:9090"
    settings.WVA_PROMETHEUS_TIMEOUT_S = 0
    with pytest.raises(ImproperlyConfigured, match="WVA_PROMETHEUS_TIMEOUT_S"):
        prometheus.metrics_source_from_settings()


def test_selector_escapes_pod_names() -> None:
    targets = [ScrapeTarget("vllm-0.a", "10.0.0.1", 8000)]
    selector = prometheus.label_selector(targets)
    assert selector == 'pod=~"vllm\\\\-0\\\\.a"'


def test_selector_matches_namespaces_when_known() -> None:
    targets = [
        NamespacedTarget("a", "10.0.0.1", 8000, namespace="llm"),
        NamespacedTarget("b", "10.0.0.2", 8000, namespace="batch"),
    ]
    selector = prometheus.label_selector(targets)
    assert selector == 'namespace=~"batch|llm", pod=~"a|b"'


def test_fresh_pod_fields_ok() -> None:
    rows = pod_rows(
        "a",
        kv_cache_usage_perc="0.5",
        num_requests_waiting="2",
        prompt_tokens_total="7",
    )
    sample = read(ScrapeTarget("a", "10.0.0.1", 8000), rows)
    assert sample.status == metrics.OK
    assert sample.kv_cache_usage == 0.5
    assert sample.kv_metric_name == "vllm:kv_cache_usage_perc"
    assert sample.num_requests_waiting == 2.0
    assert sample.prompt_tokens_total == 7.0
    assert sample.field_status["num_requests_running"] == metrics.MISSING
    assert sample.num_requests_running is None


def test_older_kv_name_used_alone() -> None:
    rows = pod_rows("a", gpu_cache_usage_perc="0.25", num_requests_waiting="0")
    sample = read(ScrapeTarget("a", "10.0.0.1", 8000), rows)
    assert sample.kv_cache_usage == 0.25
    assert sample.kv_metric_name == "vllm:gpu_cache_usage_perc"


def test_no_kv_series_is_kv_metric_not_found() -> None:
    sample = read(ScrapeTarget("a", "10.0.0.1", 8000), pod_rows("a"))
    assert sample.status == metrics.KV_METRIC_NOT_FOUND
    assert sample.kv_cache_usage is None


def test_nan_is_non_finite() -> None:
    rows = pod_rows("a", kv_cache_usage_perc="NaN", num_requests_waiting="1")
    sample = read(ScrapeTarget("a", "10.0.0.1", 8000), rows)
    assert sample.status == metrics.NON_FINITE
    assert sample.kv_cache_usage is None


def test_kv_above_one_out_of_range() -> None:
    rows = pod_rows("a", kv_cache_usage_perc="1.5", num_requests_waiting="1")
    sample = read(ScrapeTarget("a", "10.0.0.1", 8000), rows)
    assert sample.status == metrics.OUT_OF_RANGE
    assert sample.kv_cache_usage is None


def test_old_sample_is_stale() -> None:
    rows = pod_rows("a", age_s=100.0, kv_cache_usage_perc="0.5")
    sample = read(ScrapeTarget("a", "10.0.0.1", 8000), rows)
    assert sample.status == metrics.STALE
    assert sample.kv_cache_usage is None
    assert "100 s old" in sample.detail


def test_pod_in_two_namespaces_ambiguous() -> None:
    rows = pod_rows("a", "llm", kv_cache_usage_perc="0.5") + pod_rows(
        "a", "batch", kv_cache_usage_perc="0.6"
    )
    sample = read(ScrapeTarget("a", "10.0.0.1", 8000), rows)
    assert sample.error_kind == prometheus.AMBIGUOUS_POD
    assert sample.status == metrics.MISSING


def test_target_namespace_picks_its_series() -> None:
    rows = pod_rows("a", "llm", kv_cache_usage_perc="0.5") + pod_rows(
        "a", "batch", kv_cache_usage_perc="0.6"
    )
    target = NamespacedTarget("a", "10.0.0.1", 8000, namespace="batch")
    assert read(target, rows).kv_cache_usage == 0.6


def test_error_response_raises_prometheus_error() -> None:
    payload = {"status": "error", "errorType": "bad_data", "error": "parse error"}
    with pytest.raises(prometheus.PrometheusQueryError, match="parse error") as info:
        prometheus.parse_vector(payload)
    assert info.value.kind == prometheus.PROMETHEUS_ERROR


def up_row(pod: str, value: str) -> tuple[dict[str, str], str]:
    return ({"namespace": "llm", "pod": pod, "wva_field": "scrape_up"}, value)


def test_pod_without_up_is_no_series() -> None:
    target = NamespacedTarget("a-0", "127.0.0.1", 8000, namespace="llm")
    sample = read(target, [])
    assert sample.status == metrics.MISSING
    assert sample.error_kind == prometheus.NO_SERIES
    assert "scrape configuration" in sample.detail


def test_pod_with_failing_scrape() -> None:
    target = NamespacedTarget("a-0", "127.0.0.1", 8000, namespace="llm")
    sample = read(target, [up_row("a-0", "0")])
    assert sample.status == metrics.MISSING
    assert sample.error_kind == prometheus.SCRAPE_FAILED
    assert sample.kv_cache_usage is None


def test_scraped_pod_without_vllm_series() -> None:
    target = NamespacedTarget("a-0", "127.0.0.1", 8000, namespace="llm")
    sample = read(target, [up_row("a-0", "1")])
    assert sample.status == metrics.MISSING
    assert sample.error_kind == prometheus.METRIC_NOT_FOUND
    assert "metric names" in sample.detail
    assert sample.num_requests_waiting is None


def test_up_alone_does_not_make_data_fresh() -> None:
    target = NamespacedTarget("a-0", "127.0.0.1", 8000, namespace="llm")
    rows = pod_rows("a-0", kv_cache_usage_perc="0.5", num_requests_waiting="2")
    sample = read(target, [*rows, up_row("a-0", "1")])
    assert sample.status == metrics.OK
    assert sample.kv_cache_usage == 0.5


def test_query_reads_up_of_targets() -> None:
    query = prometheus.pod_query('pod=~"a-0"')
    assert 'max by (namespace, pod) (up{pod=~"a-0"})' in query


class DripHandler(BaseHTTPRequestHandler):
    """Serves every query slowly (one byte at a time) or with a huge body."""

    mode = "drip"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            if self.mode == "drip":
                # 40 bytes at one byte per 0.1 s: 4 s in all.
                for byte in b'{"status":"success","data":{"result":[]}}'[:40]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            else:
                chunk = b" " * (1024 * 1024)
                for _ in range(40):
                    self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return


@pytest.fixture
def drip_server() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DripHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_slow_drip_response_times_out(drip_server: Any) -> None:
    DripHandler.mode = "drip"
    url = f"http://127.0.0.1:{drip_server.server_address[1]}"
    source = prometheus.PrometheusMetricsSource(url, timeout_s=0.5, retries=0)
    started = time.monotonic()
    with pytest.raises(prometheus.PrometheusQueryError) as caught:
        source.query("up")
    assert caught.value.kind == prometheus.PROMETHEUS_TIMEOUT
    # The whole response is bounded by 2 * timeout_s, plus one socket read.
    assert time.monotonic() - started < 2.5


def test_oversized_response_rejected(drip_server: Any) -> None:
    DripHandler.mode = "huge"
    url = f"http://127.0.0.1:{drip_server.server_address[1]}"
    source = prometheus.PrometheusMetricsSource(url, timeout_s=5.0, retries=0)
    with pytest.raises(prometheus.PrometheusQueryError) as caught:
        source.query("up")
    assert caught.value.kind == prometheus.PROMETHEUS_ERROR
    assert "larger than" in str(caught.value)


def test_credentials_redacted_from_messages() -> None:
    shown = prometheus.redacted("http://admin:s3cret@127.0.0.1:1/api/v1/query")
    assert shown == "http://127.0.0.1:1/api/v1/query"
    source = prometheus.PrometheusMetricsSource(
        "http://admin:s3cret@127.0.0.1:1", timeout_s=0.2, retries=0
    )
    with pytest.raises(prometheus.PrometheusQueryError) as caught:
        source.query("up")
    assert "s3cret" not in str(caught.value)
