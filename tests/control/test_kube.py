"""Actuator module against a fake Kubernetes client."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.control.fakes import FakeKube, FakePod
from wva_web.integrations import kube as kube_module
from wva_web.integrations.kube import (
    Actuator,
    PermanentActuatorError,
    TransientActuatorError,
)

COST = "controller.kubernetes.io/pod-deletion-cost"


def workload(kind: str = "Deployment") -> Any:
    return SimpleNamespace(name="a", namespace="llm", kind=kind, workload_name="a")


@pytest.fixture
def fake() -> FakeKube:
    client = FakeKube()
    client.add(
        "a",
        3,
        [FakePod("a1", annotations={COST: "-100"}), FakePod("a2"), FakePod("a3")],
    )
    return client


def actuator(fake: FakeKube, **options: Any) -> Actuator:
    return Actuator(apps=fake, core=fake, autoscaling=fake, timeout_s=1.0, **options)


def test_scale_up_patches_only_scale(fake, settings):
    # Given a Deployment at 3 replicas.
    settings.WVA_DRY_RUN = False
    # When it is set to 4.
    actuator(fake).set_replicas(workload(), 4)
    # Then the scale subresource is the only change of the count, no pod is
    # annotated, and the Deployment gets only annotations (the fake rejects
    # any other field).
    writes = [call for call in fake.calls if call[0].startswith("patch")]
    assert writes == [
        ("patch_namespaced_deployment_scale", "a", "4"),
        ("patch_namespaced_deployment", "a", "annotations"),
    ]
    assert fake.workloads["a"].annotations[kube_module.PREVIOUS_REPLICAS] == "3"


def test_dry_run_writes_nothing(fake):
    # Given an actuator in dry-run mode.
    # When a reduction with a victim is requested.
    result = actuator(fake, dry_run=True).set_replicas(workload(), 2, victim_pod="a2")
    # Then nothing is patched and the result is marked dry run.
    assert [call for call in fake.calls if call[0].startswith("patch")] == []
    assert result.dry_run is True
    assert fake.workloads["a"].replicas == 3


def test_unknown_victim_is_permanent_error(fake):
    # When the victim is not a pod of the workload.
    with pytest.raises(PermanentActuatorError) as raised:
        actuator(fake, dry_run=False).set_replicas(workload(), 2, victim_pod="zz")
    # Then nothing is scaled.
    assert raised.value.reason == "victim_not_found"
    assert fake.workloads["a"].replicas == 3


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (403, PermanentActuatorError, "forbidden"),
        (404, PermanentActuatorError, "not_found"),
        (429, TransientActuatorError, "http_429"),
        (500, TransientActuatorError, "http_500"),
        (503, TransientActuatorError, "http_503"),
    ],
)
def test_errors_split_by_status(fake, status, error, reason):
    # Given every scale read fails with the status.
    fake.failures["read_namespaced_deployment_scale"] = status
    # When the count is read, then the error class and reason follow the status.
    with pytest.raises(error) as raised:
        actuator(fake).read_replicas(workload())
    assert raised.value.reason == reason
    assert raised.value.status == status


def test_conflict_retried_once(fake):
    # Given the first scale patch hits a 409 conflict.
    original = fake.patch_namespaced_deployment_scale
    attempts: list[int] = []

    def flaky(name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise ApiException(status=409, reason="Conflict")
        return original(name, namespace, body, **kwargs)

    fake.patch_namespaced_deployment_scale = flaky  # type: ignore[method-assign]
    # When the count is set.
    actuator(fake, dry_run=False).set_replicas(workload(), 5)
    # Then it was read again and patched a second time.
    assert len(attempts) == 2
    reads = [
        call for call in fake.calls if call[0] == "read_namespaced_deployment_scale"
    ]
    assert len(reads) == 2
    assert fake.workloads["a"].replicas == 5


def test_timeout_is_transient(fake):
    # Given the client raises urllib3's read timeout.
    import urllib3

    def slow(*args: Any, **kwargs: Any) -> Any:
        raise urllib3.exceptions.ReadTimeoutError(None, "/scale", "read timed out")

    fake.read_namespaced_deployment_scale = slow  # type: ignore[method-assign]
    # When the count is read, then a transient timeout error is raised.
    with pytest.raises(TransientActuatorError) as raised:
        actuator(fake).read_replicas(workload())
    assert raised.value.reason == "timeout"


def test_stateful_set_uses_its_scale_subresource():
    # Given a StatefulSet workload on a client that records calls.
    calls: list[str] = []
    scale = SimpleNamespace(spec=SimpleNamespace(replicas=2))
    patched = SimpleNamespace(metadata=SimpleNamespace(uid="uid-a"))

    class Apps:
        def read_namespaced_stateful_set_scale(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("read_namespaced_stateful_set_scale")
            return scale

        def patch_namespaced_stateful_set_scale(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("patch_namespaced_stateful_set_scale")
            return scale

        def patch_namespaced_stateful_set(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("patch_namespaced_stateful_set")
            return patched

    class Core:
        def create_namespaced_event(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("create_namespaced_event")

    # When it is scaled up.
    Actuator(
        apps=Apps(), core=Core(), autoscaling=object(), dry_run=False
    ).set_replicas(workload("StatefulSet"), 3)
    # Then only the StatefulSet calls ran, and the change was recorded.
    assert calls == [
        "read_namespaced_stateful_set_scale",
        "patch_namespaced_stateful_set_scale",
        "patch_namespaced_stateful_set",
        "create_namespaced_event",
    ]


def test_pods_listed_by_workload_selector(fake):
    # Given a terminating pod and a pending one besides ready pods.
    fake.workloads["a"].pods.append(FakePod("a4", terminating=True))
    fake.workloads["a"].pods.append(FakePod("a5", phase="Pending", ready=False))
    # When the pods are listed.
    pods = {pod.name: pod for pod in actuator(fake).list_pods(workload())}
    # Then the selector comes from matchLabels and the states are read.
    assert ("list_namespaced_pod", "app=a") in fake.calls
    assert pods["a1"].deletion_cost == "-100"
    assert pods["a1"].pod_ip == "127.0.0.1"
    assert pods["a1"].metrics_port == 9000
    assert pods["a4"].terminating is True
    assert pods["a5"].pending is True
    assert pods["a5"].ready is False


def test_gpu_inventory_counts_requests():
    # Given one L40S node with 4 GPUs and pods requesting 3 of them.
    from kubernetes.client import V1Node, V1NodeStatus, V1ObjectMeta

    client = FakeKube()
    client.add("a", 3, [FakePod("a1"), FakePod("a2"), FakePod("a3")])
    client.add("b", 1, [FakePod("b1", phase="Pending", ready=False)])
    node = V1Node(
        metadata=V1ObjectMeta(
            name="node-1", labels={"nvidia.com/gpu.product": "NVIDIA-L40S"}
        ),
        status=V1NodeStatus(allocatable={"nvidia.com/gpu": "4"}),
    )
    client.list_node = lambda **_: SimpleNamespace(items=[node])  # type: ignore[method-assign]
    # When the inventory is read.
    inventory = actuator(client).gpu_inventory()
    # Then the unscheduled pod does not count, and one GPU is free.
    count = inventory["NVIDIA-L40S"]
    assert (count.allocatable, count.requested, count.free) == (4, 3, 1)


def test_get_actuator_reports_bad_kubeconfig(settings, tmp_path):
    # Given a kubeconfig path that does not exist.
    settings.WVA_KUBECONFIG = str(tmp_path / "missing")
    # When the actuator is built, then a permanent error names the problem.
    with pytest.raises(PermanentActuatorError) as raised:
        kube_module.get_actuator()
    assert raised.value.reason == "no_kubeconfig"
