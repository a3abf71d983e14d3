"""Events and previous-count annotations of each change, over the emulator's API."""

from __future__ import annotations

import logging

import pytest

from tests.integrations.kube_harness import (
    DEPLOYMENT,
    KIND_OF,
    LEADER_WORKER_SET,
    STATEFUL_SET,
    before_first_call,
    inject_fault,
    list_events,
    make_actuator,
    running_emulator,
    workload,
)
from wva_web.integrations import kube
from wva_web.integrations.kube import ChangeNote

pytestmark = pytest.mark.emulator
KINDS = [DEPLOYMENT, STATEFUL_SET, LEADER_WORKER_SET]
NOTE = ChangeNote(action_id=42, approved_by="approver")


@pytest.fixture
def emulator(tmp_path):
    with running_emulator(tmp_path) as emu:
        yield emu


@pytest.fixture
def actuator(emulator):
    return make_actuator(emulator)


@pytest.mark.parametrize("name", KINDS)
def test_scale_up_event_on_workload(actuator, emulator, name):
    # Given a workload and its uid.
    target = workload(name)
    uid = actuator.read_workload(target).uid
    before = actuator.read_replicas(target)
    # When approved action 42 adds a replica.
    actuator.set_replicas(target, before + 1, note=NOTE)
    # Then one Event on the workload records it.
    (event,) = list_events(emulator)
    assert event["reason"] == "WVAScaledUp"
    assert event["type"] == "Normal"
    assert event["involvedObject"]["kind"] == KIND_OF[name]
    assert event["involvedObject"]["name"] == name
    assert event["involvedObject"]["uid"] == uid
    # And its message names from, to, the action and the approver.
    message = event["message"]
    assert f"from {before} to {before + 1} replicas" in message
    assert "scale action 42" in message
    assert "approved by approver" in message


def test_scale_down_event_names_victims(actuator, emulator):
    # Given a StatefulSet of 3 replicas.
    target = workload(STATEFUL_SET)
    # When it drops to 2.
    actuator.set_replicas(target, 2, note=NOTE)
    # Then the Event is a scale-down that names the removed pod.
    (event,) = list_events(emulator)
    assert event["reason"] == "WVAScaledDown"
    assert f"removing {STATEFUL_SET}-2" in event["message"]


def test_override_event_reason(actuator, emulator):
    # When an override sets the count.
    note = ChangeNote(action_id=7, approved_by="operator", override=True)
    actuator.set_replicas(workload(LEADER_WORKER_SET), 1, note=note)
    # Then the Event's reason is WVAOverride.
    (event,) = list_events(emulator)
    assert event["reason"] == "WVAOverride"
    assert "scale action 7" in event["message"]


@pytest.mark.parametrize("name", KINDS)
def test_previous_count_annotated(actuator, name):
    # Given a workload never changed by the console.
    target = workload(name)
    before = actuator.read_replicas(target)
    assert actuator.read_workload(target).previous_replicas is None
    # When the count changes.
    actuator.set_replicas(target, before + 1, note=NOTE)
    # Then the read workload carries the previous count and the action.
    info = actuator.read_workload(target)
    assert info.previous_replicas == before
    action = info.last_action
    assert action is not None
    assert action["action"] == 42
    assert action["from"] == before
    assert action["to"] == before + 1
    assert action["approvedBy"] == "approver"


def test_dry_run_writes_log_only(emulator, caplog):
    # Given an actuator in dry-run mode.
    actuator = make_actuator(emulator, dry_run=True)
    target = workload(DEPLOYMENT)
    # When a change is requested.
    with caplog.at_level(logging.INFO, logger="wva_web.integrations.kube"):
        result = actuator.set_replicas(target, 3, note=NOTE)
    # Then nothing changed: no count, no annotation, no Event.
    assert result.dry_run is True
    assert actuator.read_replicas(target) == 1
    assert actuator.read_workload(target).previous_replicas is None
    assert list_events(emulator) == []
    # And one log line names the change, the action and the approver.
    lines = [r.getMessage() for r in caplog.records if "dry run" in r.getMessage()]
    assert len(lines) == 1
    assert "from 1 to 3" in lines[0]
    assert "action 42" in lines[0]
    assert "approved by approver" in lines[0]


def test_failed_event_keeps_scale(actuator, emulator, caplog):
    # Given the Event write fails with HTTP 500.
    before_first_call(
        actuator.core,
        "create_namespaced_event",
        lambda: inject_fault(emulator, status=500),
    )
    target = workload(DEPLOYMENT)
    # When the count changes.
    with caplog.at_level(logging.WARNING, logger="wva_web.integrations.kube"):
        result = actuator.set_replicas(target, 2, note=NOTE)
    # Then the scale remains and the failure is logged.
    assert actuator.read_replicas(target) == 2
    assert "event" not in result.calls
    assert list_events(emulator) == []
    assert any("creating the Event" in r.getMessage() for r in caplog.records)


def test_forbidden_annotation_keeps_scale(actuator, emulator, caplog):
    # Given the workload patch is forbidden, as without the optional Role.
    before_first_call(
        actuator.custom,
        "patch_namespaced_custom_object",
        lambda: inject_fault(emulator, status=403),
    )
    target = workload(LEADER_WORKER_SET)
    # When the count changes.
    with caplog.at_level(logging.WARNING, logger="wva_web.integrations.kube"):
        result = actuator.set_replicas(target, 4, note=NOTE)
    # Then the scale and the Event stand, and the 403 is logged.
    assert actuator.read_replicas(target) == 4
    assert actuator.read_workload(target).previous_replicas is None
    assert result.calls == ["scale:4", "event"]
    assert len(list_events(emulator)) == 1
    assert any("HTTP 403" in r.getMessage() for r in caplog.records)


def test_event_timeout_keeps_scale(actuator, emulator):
    # Given the Event write waits past the actuator's time-out.
    before_first_call(
        actuator.core,
        "create_namespaced_event",
        lambda: inject_fault(emulator, delay_s=2.5),
    )
    target = workload(STATEFUL_SET)
    # When the count changes, then it remains without the Event.
    result = actuator.set_replicas(target, 4, note=NOTE)
    assert actuator.read_replicas(target) == 4
    assert result.calls == ["scale:4", "annotate"]


def test_scale_failure_writes_no_event(actuator, emulator):
    # Given every scale patch is forbidden.
    before_first_call(
        actuator.apps,
        "patch_namespaced_deployment_scale",
        lambda: inject_fault(emulator, status=403),
    )
    # When the count is set, then the error is raised and nothing is recorded.
    with pytest.raises(kube.PermanentActuatorError):
        actuator.set_replicas(workload(DEPLOYMENT), 2, note=NOTE)
    assert list_events(emulator) == []
    assert actuator.read_workload(workload(DEPLOYMENT)).previous_replicas is None
