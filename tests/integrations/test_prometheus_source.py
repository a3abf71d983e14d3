"""PrometheusMetricsSource against a real Prometheus scraping the emulated cluster.

The emulator runs on a manual clock that no test advances once Prometheus
has started, so each pod's one-minute peak equals its current value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fleetsim.emulator import Emulator
from tests.integrations.prometheus_harness import (
    GatewayExporter,
    PrometheusServer,
    free_port,
    prometheus_binary,
    scrape_config,
    wait_for_scrape,
)
from wva_web.integrations import metrics, prometheus
from wva_web.integrations.metrics import ScrapeTarget

pytestmark = pytest.mark.emulator

# L4 pods export the KV-cache gauge under its older vLLM name.
OLDER_PODS = "llama-8b-l4-.*"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    prometheus_binary()
    workdir = tmp_path_factory.mktemp("emulator")
    with Emulator(
        "data/demo_fleet.json",
        workdir,
        port=0,
        clock="manual",
        compression=8.0,
        startup_delay_s=30.0,
        seed=1,
    ) as emu:
        emu.advance(90.0)
        yield emu


@pytest.fixture(scope="module")
def targets(emulator: Emulator) -> list[ScrapeTarget]:
    """Targets of the pods that the emulator's service discovery lists."""
    url = f"{emulator.base_url}/emulator/prometheus-targets"
    groups = requests.get(url, timeout=5).json()
    return [
        ScrapeTarget(
            pod=group["labels"]["pod"],
            ip="127.0.0.1",
            port=emulator.port,
            path=group["labels"]["__metrics_path__"],
        )
        for group in groups
    ]


@pytest.fixture(scope="module")
def server(
    emulator: Emulator,
    targets: list[ScrapeTarget],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusServer]:
    gateway = GatewayExporter().start()
    sd_url = f"{emulator.base_url}/emulator/prometheus-targets"
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    prom = PrometheusServer(workdir, scrape_config(sd_url, OLDER_PODS, gateway.address))
    try:
        prom.start()
        prom.wait_for_pods(target.pod for target in targets)
        wait_for_scrape()
        yield prom
    finally:
        prom.stop()
        gateway.stop()


@pytest.fixture
def source(server: PrometheusServer) -> prometheus.PrometheusMetricsSource:
    return prometheus.PrometheusMetricsSource(server.url, timeout_s=5.0)


def direct_scrape(targets: list[ScrapeTarget]) -> dict[str, metrics.PodMetrics]:
    return metrics.ScrapeMetricsSource(timeout_s=5.0).scrape(targets)


def test_service_discovery_lists_every_variant(targets: list[ScrapeTarget]) -> None:
    variants = {target.pod.rsplit("-", 2)[0] for target in targets}
    assert variants == {
        "llama-8b-h100",
        "llama-8b-a100",
        "llama-8b-l40s",
        "llama-8b-l4",
    }


def test_values_equal_emulator(source, targets) -> None:
    # Given the same pods read through Prometheus and scraped directly.
    through_prometheus = source.scrape(targets)
    direct = direct_scrape(targets)
    # Then every field has the same status and value.
    assert set(through_prometheus) == {target.pod for target in targets}
    for pod, expected in direct.items():
        got = through_prometheus[pod]
        assert expected.status == metrics.OK, pod
        assert got.status == metrics.OK, (pod, got.detail)
        assert got.error_kind == ""
        for name in metrics.FIELDS:
            assert got.field_status[name] == expected.field_status[name], (pod, name)
            want = getattr(expected, name)
            if want is None:
                assert getattr(got, name) is None, (pod, name)
            else:
                assert getattr(got, name) == pytest.approx(want), (pod, name)


def test_both_kv_metric_generations(source, targets) -> None:
    # Given L4 pods stored under vllm:gpu_cache_usage_perc, the rest under the
    # V1 name.
    samples = source.scrape(targets)
    direct = direct_scrape(targets)
    older = [t.pod for t in targets if t.pod.startswith("llama-8b-l4-")]
    newer = [t.pod for t in targets if not t.pod.startswith("llama-8b-l4-")]
    assert older
    assert newer
    # Then each pod's KV usage comes from the name it exports.
    for pod in older:
        assert samples[pod].kv_metric_name == "vllm:gpu_cache_usage_perc"
        assert samples[pod].kv_cache_usage == pytest.approx(direct[pod].kv_cache_usage)
    for pod in newer:
        assert samples[pod].kv_metric_name == "vllm:kv_cache_usage_perc"
        assert samples[pod].field_status["kv_cache_usage"] == metrics.OK


def test_pods_not_among_targets_ignored(source, targets) -> None:
    # Given only the first target asked for, while Prometheus stores all.
    samples = source.scrape(targets[:1])
    # Then the result has that pod alone.
    assert list(samples) == [targets[0].pod]


def test_unknown_pod_missing_not_zero(source, emulator) -> None:
    # Given a target that Prometheus has no series of.
    gone = ScrapeTarget(pod="llama-8b-h100-gone-0", ip="127.0.0.1", port=1)
    sample = source.scrape([gone])[gone.pod]
    # Then every field is missing, none is 0.
    assert sample.status == metrics.MISSING
    assert sample.error_kind == prometheus.NO_SERIES
    assert sample.kv_cache_usage is None
    assert sample.num_requests_waiting is None
    assert set(sample.field_status.values()) == {metrics.MISSING}


def test_gateway_pool_metrics_read(source, targets) -> None:
    # When one scrape runs while the gateway exports its pool averages.
    source.scrape(targets)
    # Then the source has them by namespace and pool name.
    pool = source.pools["llm/llama-8b-pool"]
    assert pool[prometheus.POOL_QUEUE] == 4.0
    assert pool[prometheus.POOL_KV] == 0.625


def test_prometheus_down_marks_every_pod_missing(targets) -> None:
    # Given a Prometheus URL where nothing listens.
    delays: list[float] = []
    down = prometheus.PrometheusMetricsSource(
        f"http://127.0.0.1:{free_port()}",
        timeout_s=1.0,
        retries=2,
        backoff_s=0.05,
        sleep=delays.append,
    )
    samples = down.scrape(targets)
    # Then the query was tried three times with a doubling backoff.
    assert delays == [0.05, 0.1]
    # And every pod is missing with the same error kind.
    assert set(samples) == {target.pod for target in targets}
    for sample in samples.values():
        assert sample.status == metrics.MISSING
        assert sample.error_kind == prometheus.PROMETHEUS_UNAVAILABLE
        assert sample.kv_cache_usage is None
    assert down.pools == {}


def test_invalid_query_not_retried(server) -> None:
    # Given a source whose query Prometheus rejects as invalid PromQL.
    delays: list[float] = []
    source = prometheus.PrometheusMetricsSource(
        server.url, timeout_s=5.0, sleep=delays.append
    )
    # Then the error is permanent: raised at once, with no retry.
    with pytest.raises(prometheus.PrometheusQueryError) as info:
        source.query("sum(")
    assert info.value.kind == prometheus.PROMETHEUS_ERROR
    assert delays == []


def test_failed_pod_scrapes_read_as_stale(source, emulator, server, targets) -> None:
    # Runs last in this module: the crash-looping pod stays so.
    # Given one pod whose endpoint starts failing (HTTP 503 while not ready).
    victim = targets[0].pod
    emulator.crash_loop(victim)
    wait_for_scrape()
    time.sleep(1.0)
    # When the source reads all pods, while its earlier peaks are in the window.
    samples = source.scrape(targets)
    # Then that pod is stale with no value, and the others are still ok.
    assert samples[victim].status == metrics.STALE
    assert samples[victim].kv_cache_usage is None
    assert "no current sample" in samples[victim].detail
    others = [samples[t.pod] for t in targets if t.pod != victim]
    assert all(sample.status == metrics.OK for sample in others)
    assert all(math.isfinite(s.kv_cache_usage or math.nan) for s in others)
