"""/metrics while Kubernetes cannot be read: last good desired count, never 0."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.actions.builders import make_accelerator, make_team, make_variant
from tests.control.fakes import NOW, FakeKube, FakeMetrics, FakePod, exposition
from wva_web.control.cycle import CycleService
from wva_web.integrations.kube import Actuator

READS = (
    "read_namespaced_deployment_scale",
    "read_namespaced_deployment",
    "list_namespaced_pod",
    "list_namespaced_horizontal_pod_autoscaler",
    "list_node",
    "list_pod_for_all_namespaces",
)


def samples(name: str) -> dict[str, float]:
    """Values of one metric family by variant name, from a fresh scrape."""
    response = Client().get("/metrics")
    assert response.status_code == 200
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == name:
                values[sample.labels["variant_name"]] = sample.value
    return values


@pytest.fixture
def kube(db: None) -> FakeKube:
    """Variant a at 4 replicas on H100-80GB, moderately loaded."""
    make_variant(
        make_team("team-a"), "a", replicas=None, accelerator=make_accelerator()
    )
    fake = FakeKube()
    fake.add("a", 4, [FakePod(f"a{i}") for i in range(4)])
    return fake


def run_cycle(kube: FakeKube, at: dt.datetime) -> None:
    source = FakeMetrics({f"a{i}": exposition(kv=0.65, waiting=1) for i in range(4)})
    source.at = at
    kube.clock = at
    actuator = Actuator(apps=kube, core=kube, autoscaling=kube, dry_run=False)
    CycleService(metrics_source=source, actuator=actuator, clock=lambda: at).run()


def test_outage_keeps_last_desired_published(kube: FakeKube) -> None:
    # Given a good cycle that published desired 4 for a.
    run_cycle(kube, NOW)
    assert samples("wva_desired_replicas") == {"a": 4.0}
    # When every Kubernetes read fails with HTTP 500 for two cycles.
    for call in READS:
        kube.failures[call] = 500
    run_cycle(kube, NOW + dt.timedelta(seconds=30))
    run_cycle(kube, NOW + dt.timedelta(seconds=60))
    # Then /metrics still publishes desired 4, not 0.
    assert samples("wva_desired_replicas") == {"a": 4.0}
    # And the current count, now unknown, is left out.
    assert samples("wva_current_replicas") == {}


def test_outage_from_start_publishes_nothing(kube: FakeKube) -> None:
    # Given Kubernetes down before any cycle read the workload.
    for call in READS:
        kube.failures[call] = 500
    # When a cycle runs.
    run_cycle(kube, NOW)
    # Then neither count is published for a.
    assert samples("wva_desired_replicas") == {}
    assert samples("wva_current_replicas") == {}
