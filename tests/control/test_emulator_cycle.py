"""Control cycles against the in-process emulated cluster on a manual clock."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from fleetsim.emulator import Emulator
from wva_web.celery import app as celery_app
from wva_web.control import actions, tasks
from wva_web.control.cycle import CycleService
from wva_web.control.models import ControlCycle, CycleStatus, ScaleAction, VariantState

pytestmark = pytest.mark.emulator


@pytest.fixture
def emulator(tmp_path, settings):
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
        yield emu


@pytest.fixture
def demo(db, emulator, monkeypatch):
    monkeypatch.setenv("WVA_ADMIN_PASSWORD", "demo-password-for-tests")
    call_command("load_demo", stdout=io.StringIO())
    call_command("ensure_demo_admin", stdout=io.StringIO())
    return emulator


def live_replicas(emu: Emulator, variant: str) -> int:
    return int(emu.status()["deployments"][variant]["replicas"])


def test_cycle_proposes_and_applies_scale_up(
    demo, django_user_model, monkeypatch, django_capture_on_commit_callbacks
):
    # Given the demo fleet under trace load, all variants in mode approval.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    pending = None
    cycles = []
    # When cycles run every 30 simulated seconds until a proposal appears.
    for _ in range(6):
        demo.advance(30.0)
        cycles.append(CycleService().run())
        pending = ScaleAction.objects.filter(state="pending").first()
        if pending is not None:
            break
    # Then the cycles read every replica and propose one scale-up.
    assert pending is not None
    assert cycles[-1].status == CycleStatus.OK
    assert pending.to_replicas == pending.from_replicas + 1
    # The variant with the lowest price per capacity that meets the ITL grows first.
    assert pending.variant.name == "llama-8b-l40s"
    assert VariantState.objects.get(variant=pending.variant).current_replicas == 1
    # When the approver approves it and the apply task runs eagerly after commit.
    approver = django_user_model.objects.get(username="approver")
    with django_capture_on_commit_callbacks(execute=True):
        actions.approve_action(pending.pk, approver)
    # Then the emulated Deployment has the new count.
    pending.refresh_from_db()
    assert pending.state == "applied"
    assert live_replicas(demo, "llama-8b-l40s") == 2


def test_celery_task_runs_cycle_eagerly(demo, monkeypatch):
    # Given the emulated cluster and eager Celery.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    demo.advance(30.0)
    # When the real task runs.
    result = tasks.run_control_cycle.apply()
    # Then one cycle row exists with the id the task returned.
    cycle = ControlCycle.objects.get()
    assert result.get() == cycle.pk
    assert cycle.status == CycleStatus.OK
    assert cycle.decisions.count() == 4
    assert cycle.samples.count() == 4
    assert cycle.accelerator_samples.count() == 4
