"""Read-back of the published desired count through a real Prometheus.

Prometheus scrapes the console's /metrics on a live test server each
second. The variant's status line compares the value Prometheus stores
with the count the console publishes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from tests.integrations.prometheus_harness import (
    PrometheusServer,
    console_config,
    free_port,
    prometheus_binary,
)
from wva_web.catalog.models import Variant
from wva_web.control.models import VariantState
from wva_web.dashboard import status

VARIANT = "llama-8b-l4"


@pytest.fixture
def published(transactional_db: None, settings: Any) -> VariantState:
    """The L4 variant with a desired count of 3, published ten minutes ago."""
    prometheus_binary()
    call_command("load_demo", stdout=io.StringIO())
    now = timezone.now()
    state = VariantState.objects.create(
        variant=Variant.objects.get(name=VARIANT),
        updated_at=now,
        current_replicas=2,
        desired_replicas=3,
        desired_published_at=now - timedelta(minutes=10),
    )
    settings.WVA_METRICS_SOURCE = "prometheus"
    cache.clear()
    return state


@pytest.fixture
def server(
    published: VariantState, live_server: Any, tmp_path: Any, settings: Any
) -> Iterator[PrometheusServer]:
    address = live_server.url.removeprefix("http://")
    prom = PrometheusServer(tmp_path / "prometheus", console_config(address))
    try:
        prom.start()
        settings.WVA_PROMETHEUS_URL = prom.url
        prom.wait_until(f'wva_desired_replicas{{variant_name="{VARIANT}"}}')
        yield prom
    finally:
        prom.stop()


def line_of(state: VariantState) -> status.StatusLine | None:
    state.refresh_from_db()
    return status.prometheus_line(state.variant, state)


def test_stored_value_matches_no_line(server: PrometheusServer) -> None:
    state = VariantState.objects.get(variant__name=VARIANT)
    assert line_of(state) is None


def test_series_gone_shows_warning(
    server: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given /metrics now rejects Prometheus's scrapes and a new count of 5.
    monkeypatch.setenv("WVA_METRICS_TOKEN", "token-prometheus-lacks")
    VariantState.objects.filter(variant__name=VARIANT).update(desired_replicas=5)
    deadline = time.monotonic() + 15.0
    while server.query("wva_desired_replicas") and time.monotonic() < deadline:
        time.sleep(0.3)
    # When the status line reads the gauge back.
    cache.clear()
    line = line_of(VariantState.objects.get(variant__name=VARIANT))
    # Then the line reports that Prometheus stores no series for the variant.
    assert line is not None
    assert line.reason == "desired_not_in_prometheus"
    assert "Published desired 5" in line.text


def test_recent_count_not_compared(server: PrometheusServer) -> None:
    # Given a count published a moment ago, which Prometheus may not have yet.
    VariantState.objects.filter(variant__name=VARIANT).update(
        desired_replicas=7, desired_published_at=timezone.now()
    )
    assert line_of(VariantState.objects.get(variant__name=VARIANT)) is None


def test_prometheus_down_shows_warning(published: VariantState, settings) -> None:
    settings.WVA_PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"
    line = line_of(published)
    assert line is not None
    assert line.reason == "desired_readback_failed"
    assert "prometheus_unavailable" not in line.text
    assert "unreachable" in line.text


def test_scrape_source_reads_nothing_back(published: VariantState, settings) -> None:
    settings.WVA_METRICS_SOURCE = "scrape"
    settings.WVA_PROMETHEUS_URL = "http://127.0.0.1:1"
    assert line_of(published) is None


def test_other_stored_value_is_mismatch(published: VariantState) -> None:
    variant = published.variant
    values = {(variant.namespace, variant.name): [4.0]}
    line = status.readback_line(variant, 5, values, "")
    assert line is not None
    assert line.reason == "desired_mismatch_in_prometheus"
    assert line.text == "Published desired 5; Prometheus stores 4"
