"""Prometheus exposition at /metrics, produced by prometheus_client only.

Each scrape builds a fresh registry with one collector that reads the
database, so label values are escaped by the library and a renamed or
deleted variant leaves no stale series behind. No authentication is needed
unless the environment sets WVA_METRICS_TOKEN. Then a scrape must send
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from wva_web.control.models import ControlCycle, CycleStatus, VariantState
from wva_web.integrations import leader

LABELS = ["variant_name", "namespace", "accelerator_type", "controller_instance"]
ERROR_STATUSES = [
    CycleStatus.FAILED,
    CycleStatus.METRICS_UNAVAILABLE,
    CycleStatus.PARTIAL,
]


class ConsoleCollector(Collector):
    """Replica gauges per variant and the health of the control cycles."""

    def collect(self) -> Iterator[Metric]:
        read_only = leader.read_only_holder(leader.recorded()) is not None
        yield from self._replicas(publish_desired=not read_only)
        yield from self._cycles()
        yield self._read_only(read_only)

    def _read_only(self, read_only: bool) -> Metric:
        gauge = GaugeMetricFamily(
            "wva_read_only",
            "1 when another console instance leads the cluster or the leader "
            "Lease is not available, else 0",
            labels=["controller_instance"],
        )
        gauge.add_metric([settings.WVA_INSTANCE], 1.0 if read_only else 0.0)
        return gauge

    def _replicas(self, publish_desired: bool) -> Iterator[Metric]:
        """Replica gauges; a read-only instance publishes no desired count.

        An HPA that sums or averages `wva_desired_replicas` over instances
        would otherwise count the standby's stale value too.

        When a cycle cannot read a variant's workload from Kubernetes, the
        variant keeps its last good desired count, so this gauge keeps
        publishing that value, and `wva_current_replicas` is left out until
        a cycle reads the live count again. A 0 would make an HPA scale the
        workload down to its minReplicas. The last good value makes it hold
        the count the console last decided, and it avoids the
        FailedGetExternalMetric errors that a missing series causes. A
        variant that no cycle has read yet publishes neither series.
        """
        desired = GaugeMetricFamily(
            "wva_desired_replicas",
            "Replica count the console publishes for each variant",
            labels=LABELS,
        )
        current = GaugeMetricFamily(
            "wva_current_replicas",
            "Replica count of each variant's workload at the last cycle",
            labels=LABELS,
        )
        states = VariantState.objects.select_related("variant__accelerator").order_by(
            "variant__name"
        )
        for state in states:
            variant = state.variant
            labels = [
                variant.name,
                variant.namespace,
                variant.accelerator.name,
                settings.WVA_INSTANCE,
            ]
            if publish_desired and state.desired_replicas is not None:
                desired.add_metric(labels, state.desired_replicas)
            if state.current_replicas is not None:
                current.add_metric(labels, state.current_replicas)
        yield desired
        yield current

    def _cycles(self) -> Iterator[Metric]:
        instance = [settings.WVA_INSTANCE]
        cycles = ControlCycle.objects.all()
        total = CounterMetricFamily(
            "wva_cycles", "Control cycles recorded", labels=["controller_instance"]
        )
        total.add_metric(instance, cycles.count())
        errors = CounterMetricFamily(
            "wva_cycle_errors",
            "Control cycles that ended failed, partial or without metrics",
            labels=["controller_instance"],
        )
        errors.add_metric(instance, cycles.filter(status__in=ERROR_STATUSES).count())
        yield total
        yield errors

        last = cycles.exclude(finished_at=None).order_by("-started_at").first()
        if last is None or last.finished_at is None:
            return
        duration = GaugeMetricFamily(
            "wva_cycle_duration_seconds",
            "Wall-clock duration of the last finished control cycle",
            labels=["controller_instance"],
        )
        duration.add_metric(
            instance, (last.finished_at - last.started_at).total_seconds()
        )
        timestamp = GaugeMetricFamily(
            "wva_last_cycle_timestamp_seconds",
            "Unix time at which the last finished control cycle ended",
            labels=["controller_instance"],
        )
        timestamp.add_metric(instance, last.finished_at.timestamp())
        yield duration
        yield timestamp


def _authorised(request: HttpRequest) -> bool:
    token = os.environ.get("WVA_METRICS_TOKEN", "")
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Return the exposition of a fresh registry."""
    if not _authorised(request):
        response = HttpResponse("a valid bearer token is required\n", status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
