"""Prometheus exposition at /metrics."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tests.actions.builders import make_team, make_variant, set_state
from wva_web.catalog.models import Variant
from wva_web.control.models import ControlCycle, CycleStatus

ODD_NAME = 'llama "8b" \\ h100'


def scrape(client: Client | None = None, **headers: str) -> dict[str, list]:
    response = (client or Client()).get("/metrics", headers=headers)
    assert response.status_code == 200
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


@pytest.fixture
def fleet(db: None) -> list[Variant]:
    """21 variants, one of them named with a double quote and a backslash."""
    team = make_team("team-a")
    variants = []
    for index in range(21):
        name = ODD_NAME if index == 7 else f"variant-{index:02d}"
        variant = make_variant(team, name, replicas=None)
        Variant.objects.filter(pk=variant.pk).update(
            workload_name=f"workload-{index:02d}"
        )
        set_state(variant, current=index, desired=index + 1)
        variants.append(variant)
    return variants


@override_settings(WVA_INSTANCE="console-2")
def test_metrics_escaped_labels_parse(fleet: list[Variant]) -> None:
    # given 21 variants, one named with " and \
    # when Prometheus scrapes /metrics
    samples = scrape()
    # then every series is present with its own value
    desired = {
        s.labels["variant_name"]: s.value for s in samples["wva_desired_replicas"]
    }
    current = {
        s.labels["variant_name"]: s.value for s in samples["wva_current_replicas"]
    }
    assert len(desired) == 21
    assert len(current) == 21
    assert desired[ODD_NAME] == 8
    assert current[ODD_NAME] == 7
    assert desired["variant-20"] == 21
    assert (
        samples["wva_desired_replicas"][0].labels["controller_instance"] == "console-2"
    )
    assert samples["wva_desired_replicas"][0].labels["accelerator_type"] == "H100-80GB"


def test_metrics_skips_unknown_counts(db: None) -> None:
    variant = make_variant(make_team("team-a"), "variant-x", replicas=None)
    set_state(variant, current=3)
    variant.state.desired_replicas = None
    variant.state.save(update_fields=["desired_replicas"])
    samples = scrape()
    assert samples["wva_desired_replicas"] == []
    assert [s.value for s in samples["wva_current_replicas"]] == [3]


def test_metrics_cycle_health(db: None) -> None:
    end = timezone.now()
    statuses = [CycleStatus.OK, CycleStatus.PARTIAL, CycleStatus.FAILED, CycleStatus.OK]
    for index, status in enumerate(statuses):
        start = end - dt.timedelta(seconds=30 * (len(statuses) - index))
        ControlCycle.objects.create(
            started_at=start,
            finished_at=start + dt.timedelta(seconds=1.5),
            status=status,
            policy="wva-v1",
        )
    last = ControlCycle.objects.order_by("-started_at").first()
    samples = scrape()
    assert samples["wva_cycles"][0].value == 4
    assert samples["wva_cycle_errors"][0].value == 2
    assert samples["wva_cycle_duration_seconds"][0].value == pytest.approx(1.5)
    assert samples["wva_last_cycle_timestamp_seconds"][0].value == pytest.approx(
        last.finished_at.timestamp()
    )


def test_metrics_needs_no_login(fleet: list[Variant]) -> None:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")


def test_metrics_token_required_when_set(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WVA_METRICS_TOKEN", "s3cret")
    assert Client().get("/metrics").status_code == 401
    wrong = Client().get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = Client().get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200


def test_metrics_newline_stored_by_bypass_still_parses(fleet: list[Variant]) -> None:
    # given a name with a newline written past validation, straight into the table
    Variant.objects.filter(pk=fleet[3].pk).update(name="variant\n03")
    samples = scrape()
    names = {s.labels["variant_name"] for s in samples["wva_desired_replicas"]}
    assert "variant\n03" in names
    assert len(names) == 21


@pytest.mark.parametrize(
    "host",
    ["10.244.1.7:8000", "wva-web.wva-system.svc.cluster.local", "[fd00::7]:8000"],
)
def test_metrics_accepts_pod_ip_host(fleet: list[Variant], host: str) -> None:
    # Prometheus scrapes pods by IP, a Host no allowed-host list names.
    response = Client().get("/metrics", HTTP_HOST=host)
    assert response.status_code == 200
    assert b"wva_desired_replicas" in response.content


def test_pages_still_check_host(db: None) -> None:
    response = Client().get("/login/", HTTP_HOST="10.244.1.7:8000")
    assert response.status_code == 400
