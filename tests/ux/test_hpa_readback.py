"""Read-back of the published desired count through the HPA's status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from kubernetes.client import (
    V1ObjectMeta,
    V2CrossVersionObjectReference,
    V2ExternalMetricStatus,
    V2HorizontalPodAutoscaler,
    V2HorizontalPodAutoscalerSpec,
    V2HorizontalPodAutoscalerStatus,
    V2MetricIdentifier,
    V2MetricStatus,
    V2MetricValueStatus,
)

from tests.control.fakes import FakeKube
from wva_web.control.models import VariantState
from wva_web.control.readback import record_readback
from wva_web.dashboard import status
from wva_web.integrations.kube import Actuator, HpaStatus

AT_1201 = dt.datetime(2026, 1, 5, 12, 1, 0, tzinfo=dt.UTC)


def external(name: str, value: str | None = None, average: str | None = None) -> Any:
    return V2MetricStatus(
        type="External",
        external=V2ExternalMetricStatus(
            metric=V2MetricIdentifier(name=name),
            current=V2MetricValueStatus(value=value, average_value=average),
        ),
    )


class HpaKube(FakeKube):
    """FakeKube whose HPA list returns the given objects with their status."""

    def __init__(self, hpas: list[Any]) -> None:
        super().__init__()
        self.hpa_objects = hpas

    def list_namespaced_horizontal_pod_autoscaler(
        self, namespace: str, **_: Any
    ) -> Any:
        self._record("list_namespaced_horizontal_pod_autoscaler", namespace)
        return type("HpaList", (), {"items": self.hpa_objects})()


def hpa(target: str, metrics: list[Any], current: int = 4, desired: int = 4) -> Any:
    return V2HorizontalPodAutoscaler(
        metadata=V1ObjectMeta(name=f"{target}-hpa"),
        spec=V2HorizontalPodAutoscalerSpec(
            max_replicas=10,
            scale_target_ref=V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name=target
            ),
        ),
        status=V2HorizontalPodAutoscalerStatus(
            current_replicas=current, desired_replicas=desired, current_metrics=metrics
        ),
    )


def read(variant: Any, hpas: list[Any]) -> HpaStatus | None:
    kube = HpaKube(hpas)
    return Actuator(apps=kube, core=kube, autoscaling=kube).read_hpa_status(variant)


def test_read_hpa_status_reads_gauge(variant):
    # Given an HPA on the variant that reads wva_desired_replicas as 4.
    hpas = [hpa("other", []), hpa("a", [external("wva_desired_replicas", "4")])]
    # When its status is read.
    found = read(variant, hpas)
    # Then the name, both counts and the metric value come back.
    assert found is not None
    assert found.name == "a-hpa"
    assert found.current_replicas == 4
    assert found.desired_replicas == 4
    assert found.metric_value == 4.0


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (external("wva_desired_replicas", "4500m"), 4.5),
        (external("wva_desired_replicas", average="2"), 8.0),
        (external("queue_depth", "30"), None),
    ],
    ids=["milli-quantity", "average-times-replicas", "other-metric"],
)
def test_read_hpa_status_metric_forms(variant, metric, expected):
    found = read(variant, [hpa("a", [metric], current=4)])
    assert found is not None
    assert found.metric_value == expected


def test_read_hpa_status_without_hpa(variant):
    assert read(variant, [hpa("other", [])]) is None


def seen_by_hpa(value: float | None, desired: int = 4) -> HpaStatus:
    return HpaStatus("a-hpa", 4, desired, value)


def test_publication_time_kept_on_republish(variant):
    # Given 5 published at 12:01 while the HPA still reads 4.
    state = VariantState(variant=variant, updated_at=AT_1201, desired_replicas=5)
    record_readback(state, 4, seen_by_hpa(4.0), AT_1201)
    # When 5 is published again 30 s later.
    later = AT_1201 + dt.timedelta(seconds=30)
    record_readback(state, 5, seen_by_hpa(4.0), later)
    # Then the publication time stays 12:01, and the HPA's read is the latest.
    assert state.desired_published_at == AT_1201
    assert state.hpa_read_at == later
    assert state.hpa_metric_value == 4.0
    # When 6 is published.
    state.desired_replicas = 6
    record_readback(state, 5, None, later)
    # Then the time moves, and no HPA fields are left behind.
    assert state.desired_published_at == later
    assert state.hpa_name == ""
    assert state.hpa_metric_value is None


def test_line_says_hpa_still_sees_old(variant, settings):
    # Given 5 published at 12:01 and an HPA that reads 4.
    settings.TIME_ZONE = "UTC"
    state = VariantState(variant=variant, updated_at=AT_1201, desired_replicas=5)
    record_readback(state, None, seen_by_hpa(4.0), AT_1201)
    # When the status line is built.
    line = status.published_line(state)
    # Then it names both values and the time.
    assert line is not None
    assert line.text == "Published desired 5 at 12:01; the HPA still sees 4"
    assert line.reason == "desired_not_seen"


def test_no_line_once_hpa_sees_value(variant):
    state = VariantState(variant=variant, updated_at=AT_1201, desired_replicas=5)
    record_readback(state, None, seen_by_hpa(5.0, desired=5), AT_1201)
    assert status.published_line(state) is None


def test_line_when_hpa_lacks_gauge(variant):
    # Given an HPA that reports no wva_desired_replicas metric and wants 3.
    state = VariantState(variant=variant, updated_at=AT_1201, desired_replicas=5)
    record_readback(state, None, seen_by_hpa(None, desired=3), AT_1201)
    # Then the line says so.
    line = status.published_line(state)
    assert line is not None
    assert line.text == (
        "Published desired 5 at 12:01; HPA a-hpa reports no wva_desired_replicas "
        "metric and wants 3 replicas"
    )
    assert line.reason == "hpa_metric_missing"


def test_page_and_api_show_readback(variant, admin_client, settings):
    # Given a stored state with the read-back.
    settings.TIME_ZONE = "UTC"
    state = VariantState(variant=variant, updated_at=AT_1201, desired_replicas=5)
    record_readback(state, None, seen_by_hpa(4.0), AT_1201)
    state.save()
    # When the variant page and the API are read.
    page = admin_client.get(f"/variants/{variant.pk}/").content.decode()
    api = admin_client.get(f"/api/v1/variants/{variant.pk}/").json()["state"]
    # Then both show the published value, its time and the HPA's view.
    assert "Published desired 5 at 12:01; the HPA still sees 4" in page
    assert 'data-reason="desired_not_seen"' in page
    assert api["desired_replicas"] == 5
    assert api["desired_published_at"].startswith("2026-01-05T12:01:00")
    assert api["hpa_name"] == "a-hpa"
    assert api["hpa_metric_value"] == 4.0
