"""Control cycles against the emulated cluster while its API fails or is gone."""

from __future__ import annotations

import io
import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from fleetsim.emulator import Emulator
from wva_web.control.cycle import CycleService
from wva_web.control.models import ControlCycle, Decision, VariantState
from wva_web.integrations import metrics

pytestmark = pytest.mark.emulator


@pytest.fixture
def demo(db: None, tmp_path: Path, settings: Any) -> Iterator[Emulator]:
    with Emulator(
        "data/demo_fleet.json",
        tmp_path / "emulator",
        port=0,
        clock="manual",
        compression=8.0,
        startup_delay_s=30.0,
        seed=1,
    ) as emu:
        settings.WVA_KUBECONFIG = str(emu.kubeconfig_path)
        settings.WVA_DRY_RUN = False
        call_command("load_demo", stdout=io.StringIO())
        yield emu


def inject_faults(emu: Emulator, count: int, status: int = 500) -> None:
    """Make the next `count` Kubernetes API calls of the emulator fail."""
    request = urllib.request.Request(
        f"{emu.base_url}/emulator/faults",
        data=json.dumps({"count": count, "status": status}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def published_desired() -> dict[str, float]:
    response = Client().get("/metrics")
    values = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            if sample.name == "wva_desired_replicas":
                values[sample.labels["variant_name"]] = sample.value
    return values


def desired_counts() -> dict[str, int | None]:
    return dict(VariantState.objects.values_list("variant__name", "desired_replicas"))


def good_cycle(emu: Emulator) -> dict[str, int | None]:
    """Run one cycle with the API healthy; return the desired counts it set."""
    emu.advance(30.0)
    CycleService().run()
    desired = desired_counts()
    assert desired
    assert all(count is not None and count > 0 for count in desired.values())
    return desired


def assert_held(cycle: ControlCycle, desired: dict[str, int | None]) -> None:
    rows = Decision.objects.filter(cycle=cycle).select_related("variant")
    assert {row.variant.name for row in rows} == set(desired)
    for row in rows:
        assert row.target_replicas == desired[row.variant.name]
        assert row.current_replicas > 0
        assert "kube_unavailable" in row.reasons
    assert desired_counts() == desired
    assert set(VariantState.objects.values_list("current_replicas", flat=True)) == {
        None
    }
    assert published_desired() == {
        name: float(count) for name, count in desired.items()
    }


def test_api_500s_hold_desired_counts(demo: Emulator) -> None:
    # Given one good cycle over the demo fleet.
    desired = good_cycle(demo)
    # When every Kubernetes API call of the next cycle fails with HTTP 500.
    inject_faults(demo, 1000)
    demo.advance(30.0)
    cycle = CycleService().run()
    inject_faults(demo, 0)
    # Then every decision, state and /metrics value keeps the last desired count.
    assert cycle.status == "partial"
    assert_held(cycle, desired)


def test_emulator_gone_holds_desired_counts(demo: Emulator) -> None:
    # Given one good cycle, then the emulated API server stopped.
    desired = good_cycle(demo)
    demo.stop()
    # When the next cycle runs against the refused connections.
    cycle = CycleService().run()
    # Then nothing reads as 0.
    kinds = {error["kind"] for error in cycle.errors}
    assert "connection_error" in kinds
    assert_held(cycle, desired)


class UnreachableMetricsSource:
    """A metrics backend whose every read fails with a refused connection."""

    def scrape(self, targets: Any) -> dict[str, Any]:
        at = datetime.now(UTC)
        return {
            target.pod: metrics.failed_sample(
                target.pod, at, "connection_refused", f"{target.url} refused"
            )
            for target in targets
        }


def test_metrics_outage_keeps_last_desired_counts(demo: Emulator) -> None:
    # Given one good cycle, and a last good decision that wanted one more
    # L4 replica than runs now.
    good_cycle(demo)
    state = VariantState.objects.get(variant__name="llama-8b-l4")
    state.desired_replicas = state.current_replicas + 1
    state.save(update_fields=["desired_replicas"])
    desired = desired_counts()
    current = dict(
        VariantState.objects.values_list("variant__name", "current_replicas")
    )
    # When the next cycle cannot read any metric.
    demo.advance(30.0)
    cycle = CycleService(metrics_source=UnreachableMetricsSource()).run()
    # Then no decision lowers a variant, and the published desired counts
    # keep the last good decision instead of falling back to the current count.
    assert cycle.status == "metrics_unavailable"
    for row in Decision.objects.filter(cycle=cycle):
        assert row.target_replicas >= row.current_replicas
        assert row.bound_by == "missing_data"
    assert desired_counts() == {
        name: max(count, current[name]) for name, count in desired.items()
    }
    assert desired_counts()["llama-8b-l4"] == current["llama-8b-l4"] + 1
