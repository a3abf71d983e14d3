"""Emulated cluster over HTTP, driven with the official Kubernetes client."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from fleetsim.emulator import Emulator, EmulatorError, require_loopback

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
    ) as emu:
        yield emu


@pytest.fixture
def api(emulator):
    api_client = config.new_client_from_config(
        config_file=str(emulator.kubeconfig_path)
    )
    yield api_client
    api_client.close()


def post(emulator: Emulator, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(
        emulator.base_url + path, data=data, method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_state_files_written(emulator):
    state = json.loads((emulator.state_dir / "emulator.json").read_text())
    assert state["port"] == emulator.port
    assert (
        f"server: http://127.0.0.1:{emulator.port}"
        in emulator.kubeconfig_path.read_text()
    )


def test_read_scale(api):
    scale = client.AppsV1Api(api).read_namespaced_deployment_scale("llama-8b-h100", NS)
    assert scale.spec.replicas == 1
    assert scale.status.replicas == 1
    assert scale.status.selector == "app=llama-8b-h100"


def test_patch_scale_creates_starting_pod(api, emulator):
    apps = client.AppsV1Api(api)
    # When the L40S deployment is patched to 3 replicas
    result = apps.patch_namespaced_deployment_scale(
        "llama-8b-l40s", NS, {"spec": {"replicas": 3}}
    )
    # Then three pods exist, two of them not ready
    assert result.spec.replicas == 3
    deployment = apps.read_namespaced_deployment("llama-8b-l40s", NS)
    assert deployment.status.replicas == 3
    assert deployment.status.ready_replicas == 1
    # And after the 30 s start-up delay all three are ready
    emulator.advance(30.0)
    deployment = apps.read_namespaced_deployment("llama-8b-l40s", NS)
    assert deployment.status.ready_replicas == 3


def test_json_patch_scale(api):
    apps = client.AppsV1Api(api)
    body = [{"op": "replace", "path": "/spec/replicas", "value": 2}]
    result = apps.patch_namespaced_deployment_scale("llama-8b-a100", NS, body)
    assert result.spec.replicas == 2


def test_stale_resource_version_conflicts(api):
    apps = client.AppsV1Api(api)
    scale = apps.read_namespaced_deployment_scale("llama-8b-a100", NS)
    apps.patch_namespaced_deployment_scale(
        "llama-8b-a100", NS, {"spec": {"replicas": 2}}
    )
    stale = {
        "metadata": {"resourceVersion": scale.metadata.resource_version},
        "spec": {"replicas": 3},
    }
    with pytest.raises(ApiException) as error:
        apps.patch_namespaced_deployment_scale("llama-8b-a100", NS, stale)
    assert error.value.status == 409


def test_list_deployments(api):
    deployments = client.AppsV1Api(api).list_namespaced_deployment(NS).items
    assert [d.metadata.name for d in deployments] == [
        "llama-8b-h100", "llama-8b-a100", "llama-8b-l40s", "llama-8b-l4",
    ]  # fmt: skip
    assert deployments[0].spec.selector.match_labels == {"app": "llama-8b-h100"}
    assert deployments[0].spec.template.spec.containers[0].name == "vllm"


def test_list_pods_by_label(api, emulator):
    pods = (
        client.CoreV1Api(api)
        .list_namespaced_pod(NS, label_selector="app=llama-8b-l4")
        .items
    )
    assert [p.metadata.name for p in pods] == emulator.pod_names("llama-8b-l4")
    pod = pods[0]
    assert pod.status.phase == "Running"
    assert [c.status for c in pod.status.conditions if c.type == "Ready"] == ["True"]
    assert pod.status.pod_ip == "127.0.0.1"
    assert pod.metadata.annotations["prometheus.io/port"] == str(emulator.port)
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.node_name == "gpu-l4-0"


def test_patch_pod_annotation_and_remove(api, emulator):
    core = client.CoreV1Api(api)
    name = emulator.pod_names("llama-8b-h100")[0]
    key = "controller.kubernetes.io/pod-deletion-cost"
    before = core.read_namespaced_pod(name, NS).metadata.resource_version
    patched = core.patch_namespaced_pod(
        name, NS, {"metadata": {"annotations": {key: "-100"}}}
    )
    assert patched.metadata.annotations[key] == "-100"
    assert int(patched.metadata.resource_version) > int(before)
    removed = core.patch_namespaced_pod(
        name, NS, {"metadata": {"annotations": {key: None}}}
    )
    assert key not in removed.metadata.annotations


def test_scale_down_marks_terminating(api, emulator):
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    apps.patch_namespaced_deployment_scale(
        "llama-8b-a100", NS, {"spec": {"replicas": 2}}
    )
    emulator.advance(30.0)
    apps.patch_namespaced_deployment_scale(
        "llama-8b-a100", NS, {"spec": {"replicas": 1}}
    )
    pods = core.list_namespaced_pod(NS, label_selector="app=llama-8b-a100").items
    assert [p.metadata.deletion_timestamp is not None for p in pods] == [False, True]


def test_list_nodes(api):
    nodes = client.CoreV1Api(api).list_node().items
    by_name = {n.metadata.name: n for n in nodes}
    h100 = by_name["gpu-h100-80gb-0"]
    assert h100.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert h100.status.allocatable["nvidia.com/gpu"] == "2"
    assert sum(int(n.status.allocatable["nvidia.com/gpu"]) for n in nodes) == 18


def test_hpa_list_is_empty(api):
    hpas = client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(NS)
    assert hpas.items == []


def test_post_event_is_stored(api, emulator):
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="wva-"),
        involved_object=client.V1ObjectReference(
            kind="Deployment", name="llama-8b-h100"
        ),
        reason="ScaleUp",
        message="1 -> 2",
        type="Normal",
    )
    created = client.CoreV1Api(api).create_namespaced_event(NS, event)
    assert created.reason == "ScaleUp"
    assert emulator.status()["events_received"] == 1


def test_replicas_beyond_limit_rejected(api):
    apps = client.AppsV1Api(api)
    with pytest.raises(ApiException) as error:
        apps.patch_namespaced_deployment_scale(
            "llama-8b-a100", NS, {"spec": {"replicas": 1_000_000}}
        )
    assert error.value.status == 422
    assert "exceeds the emulator's limit" in json.loads(error.value.body)["message"]
    scale = apps.read_namespaced_deployment_scale("llama-8b-a100", NS)
    assert scale.spec.replicas == 1


def test_event_with_bad_metadata_rejected(emulator):
    request = urllib.request.Request(
        f"{emulator.base_url}/api/v1/namespaces/{NS}/events",
        data=json.dumps({"metadata": 5}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    error.value.close()
    assert error.value.code == 422


def test_unknown_deployment_is_404(api):
    with pytest.raises(ApiException) as error:
        client.AppsV1Api(api).read_namespaced_deployment_scale("nope", NS)
    assert error.value.status == 404
    assert json.loads(error.value.body)["kind"] == "Status"


def test_injected_fault_hits_next_calls(api, emulator):
    post(emulator, "/emulator/faults", {"count": 2, "status": 500})
    apps = client.AppsV1Api(api)
    for _ in range(2):
        with pytest.raises(ApiException) as error:
            apps.read_namespaced_deployment_scale("llama-8b-h100", NS)
        assert error.value.status == 500
    assert apps.read_namespaced_deployment_scale("llama-8b-h100", NS).spec.replicas == 1


def test_metrics_parse(emulator):
    emulator.advance(20.0)
    name = emulator.pod_names("llama-8b-h100")[0]
    with urllib.request.urlopen(
        f"{emulator.base_url}/pods/{name}/metrics", timeout=5
    ) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    kv = families["vllm:kv_cache_usage_perc"].samples[0]
    assert kv.labels == {
        "model_name": "meta-llama/Llama-3.1-8B-Instruct",
        "engine": "0",
    }
    assert 0.0 < kv.value < 1.0
    success = families["vllm:request_success"].samples[0]
    assert success.value > 10
    info = families["vllm:cache_config_info"].samples[0]
    assert info.labels["num_gpu_blocks"] == str(451000 // 16)
    assert info.labels["block_size"] == "16"
    ttft_count = [
        s
        for s in families["vllm:time_to_first_token_seconds"].samples
        if s.name.endswith("_count")
    ]
    assert ttft_count[0].value == pytest.approx(success.value, abs=300)


def test_metrics_of_starting_pod_unavailable(api, emulator):
    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        "llama-8b-l4", NS, {"spec": {"replicas": 2}}
    )
    name = emulator.pod_names("llama-8b-l4")[1]
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{emulator.base_url}/pods/{name}/metrics", timeout=5)
    error.value.close()
    assert error.value.code == 503


def test_advance_route_moves_clock(emulator):
    status = post(emulator, "/emulator/advance?seconds=12.5")
    assert status["sim_time_s"] == pytest.approx(12.5)
    assert status["arrived"] > 0


def test_non_loopback_host_rejected():
    with pytest.raises(EmulatorError, match="not a loopback"):
        require_loopback("0.0.0.0")
