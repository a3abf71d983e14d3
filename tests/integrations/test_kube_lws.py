"""StatefulSets and LeaderWorkerSets through the actuator, over the emulator's API."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError
from kubernetes.client.exceptions import ApiException

from tests.integrations.kube_harness import (
    DEPLOYMENT,
    LEADER_WORKER_SET,
    STATEFUL_SET,
    before_first_call,
    inject_fault,
    make_actuator,
    running_emulator,
    workload,
)
from wva_web.catalog.models import Variant
from wva_web.control import cycle_safety
from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.integrations import kube
from wva_web.integrations.kube import (
    PermanentActuatorError,
    PodInfo,
    TransientActuatorError,
)

pytestmark = pytest.mark.emulator
ORDERED = [STATEFUL_SET, LEADER_WORKER_SET]


@pytest.fixture
def emulator(tmp_path):
    with running_emulator(tmp_path) as emu:
        yield emu


@pytest.fixture
def actuator(emulator):
    return make_actuator(emulator)


def test_lws_replicas_are_groups(actuator):
    # Given a LeaderWorkerSet of 3 groups of 2 pods.
    lws = workload(LEADER_WORKER_SET)
    # When its count and pods are read.
    replicas = actuator.read_replicas(lws)
    pods = actuator.list_pods(lws)
    # Then the count is in groups and only the leaders are listed.
    assert replicas == 3
    assert [pod.name for pod in pods] == [
        f"{LEADER_WORKER_SET}-0",
        f"{LEADER_WORKER_SET}-1",
        f"{LEADER_WORKER_SET}-2",
    ]
    assert [pod.ordinal for pod in pods] == [0, 1, 2]
    assert all(pod.metrics_port for pod in pods)


def test_lws_workload_read(actuator):
    # When the LeaderWorkerSet object is read.
    info = actuator.read_workload(workload(LEADER_WORKER_SET))
    # Then its selector picks the leaders, and its template's grace period.
    assert info.kind == "LeaderWorkerSet"
    assert info.replicas == 3
    assert info.match_labels == {
        kube.LWS_NAME_LABEL: LEADER_WORKER_SET,
        kube.LWS_WORKER_INDEX_LABEL: "0",
    }
    assert info.grace_period_s == 30
    assert info.uid


def test_stateful_set_pods_have_ordinals(actuator):
    # When the StatefulSet's pods are listed.
    pods = actuator.list_pods(workload(STATEFUL_SET))
    # Then each pod's ordinal comes from its pod-index label.
    assert {pod.name: pod.ordinal for pod in pods} == {
        f"{STATEFUL_SET}-0": 0,
        f"{STATEFUL_SET}-1": 1,
        f"{STATEFUL_SET}-2": 2,
    }


@pytest.mark.parametrize("name", ORDERED)
def test_scale_up_adds_next_ordinal(actuator, emulator, name):
    # Given 3 replicas.
    target = workload(name)
    # When the count is set to 4.
    result = actuator.set_replicas(target, 4)
    # Then the scale subresource reads 4 and the new replica is ordinal 3.
    assert result.previous == 3
    assert actuator.read_replicas(target) == 4
    assert emulator.pod_names(name)[-1] == f"{name}-3"
    assert result.victims == []


@pytest.mark.parametrize("name", ORDERED)
def test_scale_down_reports_highest_ordinal(actuator, emulator, name):
    # Given 3 replicas and a victim chosen by deletion cost.
    target = workload(name)
    # When the count drops to 1 with ordinal 0 named as the victim.
    result = actuator.set_replicas(target, 1, victim_pod=f"{name}-0")
    # Then the result names the highest ordinals, highest first.
    assert result.victims == [f"{name}-2", f"{name}-1"]
    # And no pod got a deletion cost, because the controller ignores it.
    assert not [call for call in result.calls if call.startswith("victim:")]
    # And those replicas are the ones terminating.
    live = [pod.name for pod in actuator.list_pods(target) if not pod.terminating]
    assert live == [f"{name}-0"]


def test_deployment_victim_still_marked(actuator, emulator):
    # Given a Deployment scaled to 2 replicas that are both ready.
    target = workload(DEPLOYMENT)
    actuator.set_replicas(target, 2)
    emulator.advance(60.0)
    oldest = emulator.pod_names(DEPLOYMENT)[0]
    # When it drops to 1 naming the oldest pod.
    result = actuator.set_replicas(target, 1, victim_pod=oldest)
    # Then that pod got the deletion cost and is the one removed.
    assert f"victim:{oldest}" in result.calls
    assert result.victims == [oldest]
    terminating = [p.name for p in actuator.list_pods(target) if p.terminating]
    assert terminating == [oldest]


@pytest.mark.parametrize("name", ORDERED)
def test_scale_conflict_retried(actuator, emulator, name):
    # Given the API returns 409 Conflict for the first scale patch.
    api = actuator.custom if name == LEADER_WORKER_SET else actuator.apps
    method = {
        LEADER_WORKER_SET: "patch_namespaced_custom_object_scale",
        STATEFUL_SET: "patch_namespaced_stateful_set_scale",
    }[name]
    before_first_call(api, method, lambda: inject_fault(emulator, status=409))
    # When the count is set.
    result = actuator.set_replicas(workload(name), 2)
    # Then the actuator read the count again and the second patch took.
    assert result.calls[0] == "scale:2"
    assert actuator.read_replicas(workload(name)) == 2


@pytest.mark.parametrize("name", ORDERED)
def test_forbidden_is_permanent(actuator, emulator, name):
    # Given the API returns 403 for the next call.
    inject_fault(emulator, status=403)
    # When the count is read, then the error is permanent and named.
    with pytest.raises(PermanentActuatorError) as raised:
        actuator.read_replicas(workload(name))
    assert raised.value.reason == "forbidden"
    assert raised.value.status == 403


@pytest.mark.parametrize("name", ORDERED)
def test_missing_workload_is_not_found(actuator, name):
    # Given a workload of that kind that does not exist.
    missing = workload("no-such-workload", kind=kube.KINDS[ORDERED.index(name) + 1])
    # When its count is set, then the error is permanent: not found.
    with pytest.raises(PermanentActuatorError) as raised:
        actuator.set_replicas(missing, 2)
    assert raised.value.reason == "not_found"


def test_kind_mismatch_is_not_found(actuator):
    # Given a StatefulSet looked up as a LeaderWorkerSet.
    wrong = workload(STATEFUL_SET, kind="LeaderWorkerSet")
    # When it is read, then the API returns 404.
    with pytest.raises(PermanentActuatorError) as raised:
        actuator.read_workload(wrong)
    assert raised.value.status == 404


@pytest.mark.parametrize("name", ORDERED)
def test_timeout_is_transient(actuator, emulator, name):
    # Given the next call waits longer than the actuator's time-out.
    inject_fault(emulator, delay_s=2.5)
    # When the count is read, then a transient time-out is raised.
    with pytest.raises(TransientActuatorError) as raised:
        actuator.read_replicas(workload(name))
    assert raised.value.reason == "timeout"


def test_unknown_kind_rejected(actuator):
    # When a kind the actuator does not serve is scaled.
    with pytest.raises(PermanentActuatorError) as raised:
        actuator.read_replicas(workload("x", kind="DaemonSet"))
    # Then the error names the kind and the kinds served.
    assert raised.value.reason == "unsupported_kind"
    assert "'DaemonSet'" in str(raised.value)
    assert "LeaderWorkerSet" in str(raised.value)


# The catalogue and the cycle.


def test_catalogue_kind_named_in_error():
    # Given a variant whose kind is not a workload kind.
    variant = Variant(kind="ReplicaSet")
    # When it is validated, then the error names the value.
    with pytest.raises(ValidationError) as raised:
        variant.clean_fields(exclude=["name", "model", "accelerator", "namespace"])
    messages = raised.value.message_dict["kind"]
    assert any("'ReplicaSet'" in message for message in messages)


def test_catalogue_accepts_lws():
    assert "LeaderWorkerSet" in Variant.Kind.values


def pod(name: str, ordinal: int, terminating: bool = False) -> PodInfo:
    return PodInfo(
        name=name,
        uid=name,
        phase="Running",
        ready=True,
        terminating=terminating,
        pod_ip="127.0.0.1",
        metrics_port=8000,
        metrics_path="/metrics",
        deletion_cost=None,
        ordinal=ordinal,
    )


def ordered_view(kind: str) -> VariantView:
    variant = SimpleNamespace(name="v", kind=kind)
    pods = [pod("v-0", 0), pod("v-1", 1), pod("v-2", 2), pod("v-3", 3, True)]
    return VariantView(variant=variant, current=3, pods=pods)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["StatefulSet", "LeaderWorkerSet"])
def test_decision_names_highest_ordinal(kind):
    # Given the policy chose v-0 to leave a 3-replica set.
    view = ordered_view(kind)
    decision = VariantDecision(target=2, victim_pod="v-0")
    # When the cycle names the victim for the kind.
    cycle_safety.name_ordinal_victim(view, decision)
    # Then the decision names the live pod of the highest ordinal.
    assert decision.victim_pod == "v-2"
    assert decision.analysis["victim_pods"] == ["v-2"]
    assert decision.analysis["policy_victim"] == "v-0"


def test_deployment_victim_kept():
    # Given a Deployment's decision with the policy's victim.
    view = ordered_view("Deployment")
    decision = VariantDecision(target=2, victim_pod="v-0")
    # When the cycle names the victim, then the policy's choice is kept.
    cycle_safety.name_ordinal_victim(view, decision)
    assert decision.victim_pod == "v-0"
    assert "victim_pods" not in decision.analysis


def test_scale_up_names_no_victim():
    # Given a StatefulSet decision that grows.
    view = ordered_view("StatefulSet")
    decision = VariantDecision(target=4)
    # When the cycle names the victim, then there is none.
    cycle_safety.name_ordinal_victim(view, decision)
    assert decision.victim_pod == ""


def test_emulator_rejects_spec_patch(actuator):
    # When a client patches a StatefulSet's spec, not its annotations.
    body = {"spec": {"replicas": 9}}
    with pytest.raises(ApiException) as raised:
        actuator.apps.patch_namespaced_stateful_set(STATEFUL_SET, "llm", body)
    # Then the emulator rejects it and the count is unchanged.
    assert raised.value.status == 400
    assert actuator.read_replicas(workload(STATEFUL_SET)) == 3
