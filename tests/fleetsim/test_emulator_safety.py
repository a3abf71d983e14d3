"""Emulated cluster: pods of all namespaces, grace periods and crash loops."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.test import override_settings
from kubernetes import client, config

from fleetsim.emulator import Emulator, EmulatorError
from wva_web.integrations.kube import Actuator, pod_info

pytestmark = pytest.mark.emulator
DATA = Path(__file__).resolve().parents[2] / "data"
NS = "llm"


@pytest.fixture
def emulator(tmp_path):
    with Emulator(
        DATA / "demo_fleet.json",
        tmp_path,
        clock="manual",
        compression=6.0,
        startup_delay_s=30.0,
        seed=3,
        trace=False,
    ) as emu:
        yield emu


@pytest.fixture
def api(emulator):
    api_client = config.new_client_from_config(
        config_file=str(emulator.kubeconfig_path)
    )
    yield api_client
    api_client.close()


def test_pods_of_all_namespaces_listed(api):
    # When pods are listed in all namespaces on a scheduled node.
    core = client.CoreV1Api(api)
    pods = core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=")
    # Then every demo replica is listed, each with its node.
    assert len(pods.items) == 4
    assert all(pod.spec.node_name for pod in pods.items)


def test_pods_of_all_namespaces_by_node(api):
    # Given the node of the H100 replica.
    core = client.CoreV1Api(api)
    selector = "app=llama-8b-h100"
    listed = core.list_pod_for_all_namespaces(label_selector=selector)
    node = listed.items[0].spec.node_name
    # When pods are listed with fieldSelector spec.nodeName=<node>.
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
    # Then only pods on that node are returned.
    assert [pod.metadata.labels["app"] for pod in pods.items] == ["llama-8b-h100"]


def test_unsupported_field_selector_rejected(api):
    core = client.CoreV1Api(api)
    with pytest.raises(client.ApiException) as info:
        core.list_pod_for_all_namespaces(field_selector="status.phase=Running")
    assert info.value.status == 400


def test_gpu_inventory_counts_all_namespaces(api):
    # When the console's actuator reads the GPU inventory of the demo fleet.
    with override_settings(WVA_DRY_RUN=False, WVA_KUBE_TIMEOUT_S=5.0):
        actuator = Actuator(api)
        inventory = actuator.gpu_inventory()
    # Then each accelerator has one GPU requested of its budget.
    h100 = inventory["NVIDIA-H100-80GB-HBM3"]
    assert (h100.allocatable, h100.requested, h100.free) == (2, 1, 1)
    assert inventory["NVIDIA-L4"].free == 7


def test_demo_grace_period_is_600(api):
    # When the Deployment and a pod are read.
    apps = client.AppsV1Api(api)
    deployment = apps.read_namespaced_deployment("llama-8b-l4", NS)
    pod = client.CoreV1Api(api).list_namespaced_pod(NS).items[0]
    # Then both carry the fleet's grace period.
    assert deployment.spec.template.spec.termination_grace_period_seconds == 600
    assert pod.spec.termination_grace_period_seconds == 600


def test_grace_period_defaults_to_30(tmp_path):
    # Given a fleet file whose variants set no grace period.
    fleet = json.loads((DATA / "demo_fleet.json").read_text())
    for variant in fleet["variants"]:
        variant.pop("termination_grace_period_s")
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet))
    # When the emulator serves it.
    with Emulator(path, tmp_path / "state", clock="manual", trace=False) as emu:
        api_client = config.new_client_from_config(config_file=str(emu.kubeconfig_path))
        deployment = client.AppsV1Api(api_client).read_namespaced_deployment(
            "llama-8b-l4", NS
        )
        api_client.close()
    # Then the template has the Kubernetes default of 30 s.
    assert deployment.spec.template.spec.termination_grace_period_seconds == 30


def test_crash_loop_pod_status(api, emulator):
    # Given the L4 replica is put in CrashLoopBackOff with 3 restarts.
    name = emulator.pod_names("llama-8b-l4")[0]
    emulator.crash_loop(name, restarts=3)
    # When the pod is read through the actuator.
    pod = client.CoreV1Api(api).read_namespaced_pod(name, NS)
    info = pod_info(pod)
    status = pod.status.container_statuses[0]
    # Then it is Running, not Ready, waiting in CrashLoopBackOff after 3 restarts.
    assert pod.status.phase == "Running"
    assert status.restart_count == 3
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.ready is False
    assert emulator.status()["deployments"]["llama-8b-l4"]["ready"] == 0
    # And the console reads it as crash-looping.
    assert info.crash_looping is True


def test_crash_route_and_unknown_pod(emulator):
    # When a crash loop is asked for over HTTP, for a real and a missing pod.
    name = emulator.pod_names("llama-8b-l40s")[0]
    url = f"{emulator.base_url}/emulator/crash?pod={name}&restarts=4"
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
    # Then the pod has 4 restarts, and a missing pod is a 404.
    assert body == {"pod": name, "restartCount": 4}
    missing = urllib.request.Request(
        f"{emulator.base_url}/emulator/crash?pod=nope", data=b"", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(missing, timeout=5)
    info.value.close()
    assert info.value.code == 404
    with pytest.raises(EmulatorError):
        emulator.crash_loop("nope")
