"""Control cycles reading through PromQL, with faults in front of Prometheus.

A real Prometheus scrapes the emulated cluster; the cycle queries it
through a loopback proxy that can fail in one of several ways. Each cycle
advances the emulator's manual clock by 30 s and waits for the next scrape.
"""

from __future__ import annotations

import io
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import F

from fleetsim.emulator import Emulator
from tests.integrations.prometheus_harness import (
    FaultProxy,
    PrometheusServer,
    prometheus_binary,
    scrape_config,
    wait_for_scrape,
)
from wva_web.control.cycle import CycleService
from wva_web.control.models import (
    ControlCycle,
    CycleStatus,
    Decision,
    MetricSample,
    ScaleAction,
    VariantState,
)
from wva_web.integrations import prometheus

pytestmark = pytest.mark.emulator

OLDER_PODS = "llama-8b-l4-.*"
TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    prometheus_binary()
    with Emulator(
        "data/demo_fleet.json",
        tmp_path_factory.mktemp("emulator"),
        port=0,
        clock="manual",
        compression=8.0,
        startup_delay_s=30.0,
        seed=1,
    ) as emu:
        emu.advance(60.0)
        yield emu


@pytest.fixture(scope="module")
def proxy(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultProxy]:
    sd_url = f"{emulator.base_url}/emulator/prometheus-targets"
    config = scrape_config(sd_url, OLDER_PODS)
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), config)
    fault_proxy = FaultProxy(server.url)
    try:
        server.start()
        pods = [
            name
            for variant in emulator.status()["deployments"]
            for name in emulator.pod_names(variant)
        ]
        server.wait_for_pods(pods)
        fault_proxy.start()
        yield fault_proxy
    finally:
        server.stop()
        fault_proxy.stop()


@pytest.fixture
def demo(db: None, emulator: Emulator, proxy: FaultProxy, settings: Any) -> Emulator:
    settings.WVA_KUBECONFIG = str(emulator.kubeconfig_path)
    settings.WVA_DRY_RUN = False
    settings.WVA_METRICS_SOURCE = "prometheus"
    settings.WVA_PROMETHEUS_URL = proxy.url
    settings.WVA_PROMETHEUS_TIMEOUT_S = TIMEOUT_S
    proxy.set_mode("pass")
    call_command("load_demo", stdout=io.StringIO())
    return emulator


def cycle_after_scrape(emu: Emulator) -> ControlCycle:
    """Advance the cluster by 30 s, wait for Prometheus to store it, run a cycle."""
    emu.advance(30.0)
    wait_for_scrape()
    cycle = CycleService().run()
    assert cycle is not None
    return cycle


def desired_counts() -> dict[str, int | None]:
    return dict(VariantState.objects.values_list("variant__name", "desired_replicas"))


def current_counts() -> dict[str, int]:
    return dict(VariantState.objects.values_list("variant__name", "current_replicas"))


def pending_actions() -> set[tuple[str, int, int]]:
    rows = ScaleAction.objects.filter(state="pending")
    return set(rows.values_list("variant__name", "from_replicas", "to_replicas"))


def metrics_conditions() -> dict[str, str]:
    """Return each variant's MetricsAvailable condition status."""
    result = {}
    for name, conditions in VariantState.objects.values_list(
        "variant__name", "conditions"
    ):
        for item in conditions or []:
            if item["type"] == "MetricsAvailable":
                result[name] = item["status"]
    return result


def test_cycle_reads_through_promql(demo: Emulator, proxy: FaultProxy) -> None:
    # When a cycle runs with WVA_METRICS_SOURCE=prometheus.
    before = proxy.requests
    cycle = cycle_after_scrape(demo)
    # Then it queried Prometheus and every ready replica reported.
    assert proxy.requests > before
    assert cycle.status == CycleStatus.OK, cycle.errors
    samples = MetricSample.objects.filter(cycle=cycle)
    assert samples.count() >= 4
    assert {row.status for row in samples} == {"ok"}
    assert all(row.kv_cache_usage is not None for row in samples)
    assert set(metrics_conditions().values()) == {"True"}
    assert Decision.objects.filter(cycle=cycle).count() == 4


def test_cycle_source_is_prometheus(demo: Emulator) -> None:
    service = CycleService()
    assert isinstance(service.metrics_source, prometheus.PrometheusMetricsSource)


FAULTS = [
    ("http_500", CycleStatus.METRICS_UNAVAILABLE, prometheus.PROMETHEUS_UNAVAILABLE),
    ("hang", CycleStatus.METRICS_UNAVAILABLE, prometheus.PROMETHEUS_TIMEOUT),
    ("empty", CycleStatus.METRICS_UNAVAILABLE, prometheus.NO_SERIES),
    ("nan", CycleStatus.PARTIAL, "non_finite"),
]


@pytest.mark.parametrize(("mode", "status", "kind"), FAULTS)
def test_fault_holds_then_recovers(
    demo: Emulator, proxy: FaultProxy, mode: str, status: str, kind: str
) -> None:
    # Given one good cycle through the proxy.
    good = cycle_after_scrape(demo)
    assert good.status == CycleStatus.OK, good.errors
    current = current_counts()
    desired_before = desired_counts()
    pending = pending_actions()
    actions_before = set(ScaleAction.objects.values_list("pk", flat=True))

    # When the next cycle's query meets the fault.
    proxy.set_mode(mode)
    faulty = cycle_after_scrape(demo)
    proxy.set_mode("pass")

    # Then the cycle records the error for the ready replicas.
    assert faulty.status == status
    kinds = {error["kind"] for error in faulty.errors}
    assert kind in kinds

    # And it holds: no decision or desired count goes below the current count.
    for row in Decision.objects.filter(cycle=faulty):
        assert row.target_replicas >= row.current_replicas, row.variant_id
        assert row.target_replicas > 0
        assert row.bound_by == "missing_data", row.variant_id
    # And the published desired count keeps the last good decision, never
    # going below the current count.
    for name, count in desired_counts().items():
        before = desired_before[name]
        assert before is not None, name
        assert count == max(before, current[name]), name
    new_actions = ScaleAction.objects.exclude(pk__in=actions_before)
    assert not new_actions.filter(to_replicas__lt=F("from_replicas")).exists()

    # And the proposals of the good cycle are still pending, not superseded.
    assert pending_actions() == pending

    # And every variant shows that its metrics are not available.
    assert set(metrics_conditions().values()) == {"False"}

    # When the proxy passes traffic again, within two cycles all is well.
    recovered = [cycle_after_scrape(demo)]
    if recovered[-1].status != CycleStatus.OK:
        recovered.append(cycle_after_scrape(demo))
    assert recovered[-1].status == CycleStatus.OK, recovered[-1].errors
    assert set(metrics_conditions().values()) == {"True"}


def test_deleted_pod_series_ignored(demo: Emulator, proxy: FaultProxy) -> None:
    # Given a Prometheus response with an extra series of a pod that is gone.
    proxy.set_mode("deleted_pod")
    cycle = cycle_after_scrape(demo)
    proxy.set_mode("pass")
    # Then the cycle reads the real pods only, with no error.
    assert cycle.status == CycleStatus.OK, cycle.errors
    pods = set(MetricSample.objects.filter(cycle=cycle).values_list("pod", flat=True))
    assert "llama-8b-deleted-0" not in pods
    assert pods


def test_pod_without_port_annotation_read(demo: Emulator) -> None:
    # Given a pod whose prometheus.io/port annotation is not a number, which
    # a scraping source could not reach but Prometheus still stores.
    pod = demo.pod_names("llama-8b-l4")[0]
    request = urllib.request.Request(
        f"{demo.base_url}/api/v1/namespaces/llm/pods/{pod}",
        data=json.dumps(
            {"metadata": {"annotations": {"prometheus.io/port": "metrics"}}}
        ).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
        method="PATCH",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    # When a cycle reads through PromQL.
    cycle = cycle_after_scrape(demo)
    # Then the pod's sample is read by name and namespace.
    assert cycle.status == CycleStatus.OK, cycle.errors
    sample = MetricSample.objects.get(cycle=cycle, pod=pod)
    assert sample.status == "ok"
    assert sample.kv_cache_usage is not None
