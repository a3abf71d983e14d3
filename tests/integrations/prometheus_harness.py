"""A real Prometheus server, a fault proxy in front of it and loopback helpers.

The server is Debian's `prometheus` binary, started on a free loopback port
in 18300-18399 with its own temporary storage. It finds the emulated
cluster's pods through the emulator's HTTP service discovery endpoint and
scrapes them every second. Pods whose names match `older_pods` get their
KV-cache gauge renamed to the older vLLM name, so one server stores both
metric generations.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import requests

from tests.conftest import skip_or_fail
from tests.ports import free_port as ports_free_port

PORTS = range(18300, 18400)
STARTUP_TIMEOUT_S = 30.0
# A hanging response of the proxy ends after this long, so no thread outlives
# the test by much.
HANG_S = 3.0
# Content type of the Prometheus text exposition format.
EXPOSITION_TYPE = "text/plain; version=0.0.4"


def prometheus_binary() -> str:
    """Return the path of the prometheus binary, or skip or fail without it."""
    path = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if path is None:
        skip_or_fail("needs Debian's prometheus binary: apt-get install prometheus")
    assert path is not None
    return path


def free_port(ports: Sequence[int] = PORTS) -> int:
    """Return the first loopback port of `ports` that nothing listens on."""
    return ports_free_port(ports)


def scrape_config(sd_url: str, older_pods: str, gateway: str = "") -> str:
    """Return a Prometheus configuration that scrapes the emulated pods each second.

    With `gateway` ("host:port"), a static job also scrapes that endpoint
    as the gateway's, in namespace llm.
    """
    sd = f"    http_sd_configs:\n      - url: {sd_url}\n        refresh_interval: 1s\n"
    return (
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: vllm\n"
        f"{sd}"
        "    relabel_configs:\n"
        "      - source_labels: [pod]\n"
        f"        regex: '{older_pods}'\n"
        "        action: drop\n"
        "  - job_name: vllm-older\n"
        f"{sd}"
        "    relabel_configs:\n"
        "      - source_labels: [pod]\n"
        f"        regex: '{older_pods}'\n"
        "        action: keep\n"
        "    metric_relabel_configs:\n"
        "      - source_labels: [__name__]\n"
        "        regex: 'vllm:kv_cache_usage_perc'\n"
        "        target_label: __name__\n"
        "        replacement: 'vllm:gpu_cache_usage_perc'\n"
    ) + (
        "  - job_name: gateway\n"
        "    static_configs:\n"
        f"      - targets: ['{gateway}']\n"
        "        labels: {namespace: llm}\n"
        if gateway
        else ""
    )


def console_config(address: str) -> str:
    """Return a Prometheus configuration that scrapes the console's /metrics."""
    return (
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: console\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: ['{address}']\n"
    )


class PrometheusServer:
    """One prometheus process on loopback with its own storage directory."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.binary = prometheus_binary()
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config)
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {STARTUP_TIMEOUT_S} s")

    def query(self, expression: str) -> list[dict[str, Any]]:
        """Run one instant query and return its result vector."""
        response = requests.post(
            self.url + "/api/v1/query", data={"query": expression}, timeout=5
        )
        response.raise_for_status()
        return list(response.json()["data"]["result"])

    def wait_until(self, expression: str, timeout_s: float = 30.0) -> list[Any]:
        """Wait until `expression` returns a non-empty vector; return it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = self.query(expression)
            if rows:
                return rows
            time.sleep(0.3)
        raise RuntimeError(f"Prometheus returns nothing for {expression}")

    def wait_for_pods(self, pods: Iterable[str], timeout_s: float = 30.0) -> None:
        """Wait until every pod has a current waiting-requests sample."""
        expected = set(pods)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = self.query("vllm:num_requests_waiting")
            if expected <= {row["metric"].get("pod") for row in rows}:
                return
            time.sleep(0.3)
        raise RuntimeError(f"Prometheus has no samples of {sorted(expected)}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler that logs no requests and sends each body in one piece."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def send_body(self, code: int, content_type: str, body: bytes) -> None:
        """Send a complete response with status `code` and `body`."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """Threaded HTTP server on a free loopback port, served by a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.address}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.1,), daemon=True
        )

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def vector_response(
    rows: Iterable[tuple[dict[str, Any], str]], at: float
) -> dict[str, Any]:
    """Build a successful instant-vector response with one series per row."""
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": labels, "value": [at, value]} for labels, value in rows
            ],
        },
    }


def wait_for_scrape() -> None:
    """Wait past the next scrape of every target, so new values are stored.

    Targets are scraped each second; the margin covers a slow scrape.
    """
    time.sleep(2.2)


class FaultProxy(LoopbackServer):
    """Loopback HTTP proxy to Prometheus's query API that injects one fault.

    `mode` is "pass" (forward unchanged), "http_500", "hang" (send nothing
    for HANG_S seconds), "empty" (an empty vector), "nan" (every value NaN)
    or "deleted_pod" (an extra series of a pod that no longer exists).
    """

    MODES = ("pass", "http_500", "hang", "empty", "nan", "deleted_pod")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.requests = 0
        super().__init__(type("Handler", (_ProxyHandler,), {"proxy": self}))

    def set_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown fault mode {mode!r}")
        self.mode = mode

    def respond(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Forward one request to Prometheus and return the (faulty) response."""
        self.requests += 1
        mode = self.mode
        if mode == "http_500":
            return 500, b'{"status":"error","error":"injected fault"}'
        if mode == "hang":
            time.sleep(HANG_S)
            return 503, b'{"status":"error","error":"injected hang"}'
        response = requests.post(
            self.upstream + path,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        )
        if mode == "pass" or response.status_code != 200:
            return response.status_code, response.content
        payload = response.json()
        rows = payload["data"]["result"]
        if mode == "empty":
            payload["data"]["result"] = []
        elif mode == "nan":
            # A gauge that reads NaN still has a current sample, so the
            # sample timestamps keep their values.
            for row in rows:
                if not row["metric"].get("wva_field", "").startswith("sample_time"):
                    row["value"][1] = "NaN"
        elif mode == "deleted_pod":
            extra = [json.loads(json.dumps(row)) for row in rows]
            for row in extra:
                if "pod" in row["metric"]:
                    row["metric"]["pod"] = "llama-8b-deleted-0"
                    row["value"][1] = "0.99"
            rows.extend(extra)
        return 200, json.dumps(payload).encode()


class _ProxyHandler(QuietHandler):
    proxy: FaultProxy

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        code, data = self.proxy.respond(self.path, body)
        try:
            self.send_body(code, "application/json", data)
        except OSError:
            # The client gave up on a hanging response and closed the socket.
            return


class GatewayExporter(LoopbackServer):
    """Loopback endpoint with the llm-d gateway's inference-pool gauges."""

    TEXT = (
        "# TYPE inference_pool_average_queue_size gauge\n"
        'inference_pool_average_queue_size{name="llama-8b-pool"} 4\n'
        "# TYPE inference_pool_average_kv_cache_utilization gauge\n"
        'inference_pool_average_kv_cache_utilization{name="llama-8b-pool"} 0.625\n'
    )

    def __init__(self) -> None:
        handler = type("Handler", (_ExporterHandler,), {"body": self.TEXT.encode()})
        super().__init__(handler)


class _ExporterHandler(QuietHandler):
    body: bytes

    def do_GET(self) -> None:  # noqa: N802
        self.send_body(200, EXPOSITION_TYPE, self.body)
