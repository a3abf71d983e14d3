"""Scrape-based metrics source against small HTTP servers on loopback."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.control.fakes import NOW, exposition
from wva_web.integrations.metrics import (
    ScrapeMetricsSource,
    ScrapeTarget,
    parse_exposition,
)

ROUTES: dict[str, tuple[int, str, float]] = {
    "/ok": (200, exposition(kv=0.42, waiting=3, running=7), 0.0),
    "/down": (503, "", 0.0),
    "/slow": (200, exposition(kv=0.1), 3.0),
    "/empty": (200, "", 0.0),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
        status, body, delay = ROUTES.get(self.path, (404, "", 0.0))
        time.sleep(delay)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # The slow route writes after the scraper gave up: a broken pipe is expected.
        return


@pytest.fixture
def server() -> Iterator[int]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_one_failing_pod_does_not_stop_others(server):
    # Given one healthy pod, one returning 503, one refusing, one slow, one empty.
    targets = [
        ScrapeTarget("ok", "127.0.0.1", server, "/ok"),
        ScrapeTarget("down", "127.0.0.1", server, "/down"),
        ScrapeTarget("refused", "127.0.0.1", closed_port(), "/ok"),
        ScrapeTarget("slow", "127.0.0.1", server, "/slow"),
        ScrapeTarget("empty", "127.0.0.1", server, "/empty"),
    ]
    source = ScrapeMetricsSource(timeout_s=0.5, clock=lambda: NOW)
    # When they are scraped.
    started = time.monotonic()
    samples = source.scrape(targets)
    elapsed = time.monotonic() - started
    # Then the healthy pod is read and each failure is named.
    assert samples["ok"].kv_cache_usage == 0.42
    assert samples["ok"].num_requests_waiting == 3
    assert samples["ok"].num_requests_running == 7
    assert samples["ok"].status == "ok"
    assert samples["down"].error_kind == "http_503"
    assert samples["refused"].error_kind == "connection_refused"
    assert samples["slow"].error_kind == "timeout"
    assert samples["empty"].error_kind == "empty_response"
    # And no failure reads as zero.
    for name in ("down", "refused", "slow", "empty"):
        assert samples[name].status == "missing"
        assert samples[name].kv_cache_usage is None
        assert samples[name].num_requests_waiting is None
    # And the slow pod did not hold the scrape for its full 3 s.
    assert elapsed < 2.5


def scrape_levels(caplog, targets: list[ScrapeTarget]) -> dict[str, int]:
    source = ScrapeMetricsSource(timeout_s=0.5, clock=lambda: NOW)
    with caplog.at_level(logging.DEBUG, logger="wva_web.integrations.metrics"):
        source.scrape(targets)
    return {
        target.pod: record.levelno
        for target in targets
        for record in caplog.records
        if record.getMessage().startswith(f"scrape of pod {target.pod} ")
    }


def test_loading_pod_failure_logged_debug(server, caplog):
    # Given a pod that is not Ready yet returning 503, and one refusing connections.
    targets = [
        ScrapeTarget("loading", "127.0.0.1", server, "/down", ready=False),
        ScrapeTarget("starting", "127.0.0.1", closed_port(), "/ok", ready=False),
    ]
    # When they are scraped.
    levels = scrape_levels(caplog, targets)
    # Then both failures are logged at DEBUG only.
    assert levels == {"loading": logging.DEBUG, "starting": logging.DEBUG}


def test_ready_pod_failure_logged_warning(server, caplog):
    # Given a Ready pod returning 503, and one refusing connections.
    targets = [
        ScrapeTarget("ready", "127.0.0.1", server, "/down"),
        ScrapeTarget("gone", "127.0.0.1", closed_port(), "/ok", ready=True),
    ]
    # When they are scraped.
    levels = scrape_levels(caplog, targets)
    # Then both failures are warnings.
    assert levels == {"ready": logging.WARNING, "gone": logging.WARNING}


def test_scrape_target_carries_readiness(make_model, make_variant):
    # Given a variant with a Ready pod and a pod still loading.
    from wva_web.control.cycle import scrape_targets
    from wva_web.control.cycle_view import VariantView
    from wva_web.integrations.kube import PodInfo

    variant = make_variant(make_model(), "a", "L4")

    def pod(name: str, ready: bool) -> PodInfo:
        return PodInfo(
            name, "", "Running", ready, False, "127.0.0.1", 9000, "/metrics", None
        )

    view = VariantView(variant=variant, pods=[pod("a1", True), pod("a2", False)])
    # When the cycle builds its scrape targets.
    targets = scrape_targets(view)
    # Then each target records whether its pod is Ready.
    assert [(t.pod, t.ready) for t in targets] == [("a1", True), ("a2", False)]


def test_stale_sample_marked():
    # Given a KV sample stamped 90 s before the scrape.
    stamp_ms = int((NOW.timestamp() - 90) * 1000)
    text = (
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f"vllm:kv_cache_usage_perc 0.2 {stamp_ms}\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        "vllm:num_requests_waiting 0\n"
    )
    # When it is parsed with a 60 s limit.
    sample = parse_exposition("a8", text, NOW, stale_after_s=60.0)
    # Then it is stale, with no value.
    assert sample.status == "stale"
    assert sample.kv_cache_usage is None


def test_garbage_is_not_numeric():
    # When the body is not Prometheus text.
    sample = parse_exposition("a1", "vllm:kv_cache_usage_perc abc\n", NOW)
    # Then the sample is not_numeric with no values.
    assert sample.status == "not_numeric"
    assert sample.kv_cache_usage is None


def test_negative_queue_out_of_range():
    # When a pod reports -1 waiting requests.
    sample = parse_exposition("a1", exposition(kv=0.3, waiting=-1), NOW)
    # Then the queue is out of range and the replica is not reporting.
    assert sample.field_status["num_requests_waiting"] == "out_of_range"
    assert sample.num_requests_waiting is None
    assert sample.reporting is False
