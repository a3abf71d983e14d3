"""Two console instances against one emulated cluster: tasks, pages and /metrics.

Both instances share the test database here; each keeps its own identity
through WVA_INSTANCE, which is all the election and the pages look at.
"""

from __future__ import annotations

import io
import logging

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from wva_web.catalog.models import Variant
from wva_web.control import tasks
from wva_web.control.models import ActionState, ControlCycle, ScaleAction
from wva_web.integrations import leader

pytestmark = pytest.mark.emulator

BANNER = "Read-only: instance console-1 leads this cluster"


@pytest.fixture
def demo(db, emulator, monkeypatch, settings):
    monkeypatch.setenv("WVA_ADMIN_PASSWORD", "demo-password-for-tests")
    call_command("load_demo", stdout=io.StringIO())
    settings.WVA_INSTANCE = "console-1"
    return emulator


@pytest.fixture
def admin_client(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_standby_runs_read_only_cycle(demo, settings, caplog):
    # Given console-1 ran a control cycle and so holds the Lease.
    first = tasks.run_control_cycle.apply().get()
    actions_before = ScaleAction.objects.count()
    # When console-2 runs the cycle task against the same cluster.
    settings.WVA_INSTANCE = "console-2"
    with caplog.at_level(logging.INFO, logger="wva_web.control.tasks"):
        second = tasks.run_control_cycle.apply().get()
    # Then console-2 stored a cycle of its own, marked read-only with the leader.
    standby = ControlCycle.objects.get(pk=second)
    assert first != second
    assert standby.outputs["read_only"] is True
    assert standby.outputs["leader"] == "console-1"
    assert "propose" not in standby.timings_ms
    # And it stored a decision per variant and proposed nothing.
    assert standby.decisions.count() == Variant.objects.count()
    assert ScaleAction.objects.count() == actions_before
    # And the leader's cycle row is not marked read-only.
    assert "read_only" not in ControlCycle.objects.get(pk=first).outputs
    # And console-2 logged why it is read-only.
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name == "wva_web.control.tasks" and "read-only" in r.getMessage()
    ]
    assert len(logged) == 1
    assert "instance console-2 does not lead" in logged[0]
    assert "console-1 holds lease llm/wva-console-leader" in logged[0]
    # And the local record names console-1 as the leader.
    assert leader.read_only_holder(leader.recorded()) == "console-1"


def test_read_only_pages_show_banner(demo, settings, admin_client):
    # Given console-1 leads and console-2 ran a round.
    tasks.run_control_cycle.apply()
    settings.WVA_INSTANCE = "console-2"
    tasks.run_control_cycle.apply()
    # When console-2's pages are opened.
    pages = {url: admin_client.get(url) for url in ("/", "/variants/", "/actions/")}
    # Then every page shows the read-only banner.
    for url, response in pages.items():
        assert response.status_code == 200, url
        assert BANNER in response.content.decode(), url


def test_leader_pages_show_no_banner(demo, admin_client):
    # Given console-1 leads.
    tasks.run_control_cycle.apply()
    # When its variant list is opened.
    response = admin_client.get("/variants/")
    # Then no read-only banner appears.
    assert response.status_code == 200
    assert "read-only-banner" not in response.content.decode()


def test_read_only_metrics_publish_no_desired(demo, settings, admin_client):
    # Given console-1 ran a cycle, so desired counts exist.
    tasks.run_control_cycle.apply()
    leader_text = admin_client.get("/metrics").content.decode()
    # When console-2 becomes read-only and is scraped.
    settings.WVA_INSTANCE = "console-2"
    tasks.run_control_cycle.apply()
    standby_text = admin_client.get("/metrics").content.decode()
    # Then the leader publishes desired counts labelled with its instance.
    assert 'wva_desired_replicas{accelerator_type="H100-80GB"' in leader_text
    assert 'controller_instance="console-1"' in leader_text
    assert 'wva_read_only{controller_instance="console-1"} 0.0' in leader_text
    # And the standby publishes none, and says it is read-only.
    assert "wva_desired_replicas{" not in standby_text
    assert 'wva_current_replicas{accelerator_type="H100-80GB"' in standby_text
    assert 'wva_read_only{controller_instance="console-2"} 1.0' in standby_text


def test_read_only_instance_applies_nothing(demo, settings):
    # Given console-1 holds the Lease and console-2 has an approved action.
    tasks.run_control_cycle.apply()
    settings.WVA_INSTANCE = "console-2"
    variant = Variant.objects.get(name="llama-8b-l4")
    before = int(demo.status()["deployments"]["llama-8b-l4"]["replicas"])
    action = ScaleAction.objects.create(
        variant=variant,
        created_at=timezone.now(),
        from_replicas=before,
        to_replicas=before + 1,
        state=ActionState.APPROVED,
    )
    # When console-2's apply task runs.
    state = tasks.apply_scale_action.apply((action.pk,)).get()
    # Then nothing is set and the action keeps its state.
    assert state == ActionState.APPROVED
    assert int(demo.status()["deployments"]["llama-8b-l4"]["replicas"]) == before
