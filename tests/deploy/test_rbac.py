"""The shipped RBAC manifests grant what the actuator needs and nothing more."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from fleetsim.emulator import Emulator
from tests.deploy.authorizer import (
    VERBS,
    Authorizer,
    Request,
    load_documents,
    parse_request,
)
from wva_web.catalog.models import Variant
from wva_web.control.cycle import CycleService
from wva_web.integrations import leader
from wva_web.integrations.kube import Actuator

NS = "llm"
ROLE_FILE = "rbac.yaml"
INVENTORY_FILE = "rbac-gpu-inventory.yaml"
ANNOTATIONS_FILE = "rbac-workload-annotations.yaml"
DEMO_FLEET = Path(__file__).resolve().parents[2] / "data" / "demo_fleet.json"
LWS = "leaderworkerset.x-k8s.io"
# Cluster-scope requests the optional inventory ClusterRole exists for.
INVENTORY_REQUESTS = {("list", "", "nodes"), ("list", "", "pods")}


@pytest.fixture(scope="module")
def role_only() -> Authorizer:
    return Authorizer(load_documents(ROLE_FILE))


@pytest.fixture(scope="module")
def with_inventory() -> Authorizer:
    return Authorizer(load_documents(ROLE_FILE, INVENTORY_FILE))


@pytest.fixture(scope="module")
def with_annotations() -> Authorizer:
    return Authorizer(load_documents(ROLE_FILE, ANNOTATIONS_FILE))


# Least-privilege table.

ALLOWED = [
    Request("get", "apps", "deployments", "scale", NS, "v"),
    Request("patch", "apps", "deployments", "scale", NS, "v"),
    Request("get", "apps", "statefulsets", "scale", NS, "v"),
    Request("patch", "apps", "statefulsets", "scale", NS, "v"),
    Request("get", LWS, "leaderworkersets", "scale", NS, "v"),
    Request("patch", LWS, "leaderworkersets", "scale", NS, "v"),
    Request("get", "apps", "deployments", "", NS, "v"),
    Request("get", "apps", "statefulsets", "", NS, "v"),
    Request("get", LWS, "leaderworkersets", "", NS, "v"),
    Request("list", "", "pods", "", NS),
    Request("patch", "", "pods", "", NS, "p"),
    Request("create", "", "events", "", NS),
    Request("list", "autoscaling", "horizontalpodautoscalers", "", NS),
    Request("create", "coordination.k8s.io", "leases", "", NS),
    Request("update", "coordination.k8s.io", "leases", "", NS, leader.LEASE_NAME),
]

DENIED = [
    Request("patch", "apps", "deployments", "", NS, "v"),
    Request("update", "apps", "deployments", "", NS, "v"),
    Request("patch", "apps", "statefulsets", "", NS, "v"),
    Request("update", "apps", "statefulsets", "", NS, "v"),
    Request("patch", LWS, "leaderworkersets", "", NS, "v"),
    Request("update", LWS, "leaderworkersets", "", NS, "v"),
    Request("update", "apps", "deployments", "scale", NS, "v"),
    Request("delete", "apps", "deployments", "", NS, "v"),
    Request("delete", "", "pods", "", NS, "p"),
    Request("watch", "", "pods", "", NS),
    Request("patch", "", "pods", "", "default", "p"),
    Request("patch", "", "pods", "", "", "p"),
    Request("create", "events.k8s.io", "events", "", NS),
    Request("update", "coordination.k8s.io", "leases", "", NS, "other-lease"),
    Request("create", "apps", "deployments", "", NS),
]

# Requests that only the optional annotations Role allows.
ANNOTATION_WRITES = [
    Request("patch", "apps", "deployments", "", NS, "v"),
    Request("patch", "apps", "statefulsets", "", NS, "v"),
    Request("patch", LWS, "leaderworkersets", "", NS, "v"),
]


def request_id(request: Request) -> str:
    return f"{request.verb}-{request.resource_path}"


@pytest.mark.parametrize("request_", ALLOWED, ids=request_id)
def test_role_allows_actuator_request(role_only, request_):
    assert role_only.can(request_)


@pytest.mark.parametrize("request_", DENIED, ids=request_id)
def test_role_denies_workload_write(with_inventory, request_):
    assert not with_inventory.can(request_)


@pytest.mark.parametrize("request_", ANNOTATION_WRITES, ids=request_id)
def test_annotations_role_allows_workload_patch(with_annotations, request_):
    assert with_annotations.can(request_)


def test_annotations_role_patches_only(with_annotations, role_only):
    # Given the main Role with and without the optional annotations Role.
    extra = with_annotations.grants(NS) - role_only.grants(NS)
    # Then the optional Role adds only `patch` on the three workload kinds.
    assert extra == {
        ("patch", "apps", "deployments"),
        ("patch", "apps", "statefulsets"),
        ("patch", LWS, "leaderworkersets"),
    }


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("namespace", [NS, "default", ""])
def test_no_verb_on_secrets(with_inventory, verb, namespace):
    assert not with_inventory.can(Request(verb, "", "secrets", "", namespace, "s"))


def test_manifests_use_no_wildcard():
    # Given every rule of both manifests.
    rules = [
        rule
        for doc in load_documents(ROLE_FILE, INVENTORY_FILE, ANNOTATIONS_FILE)
        for rule in doc.get("rules", [])
    ]
    # Then none grants "*" in groups, resources or verbs.
    assert len(rules) == 13
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule


def test_role_is_namespaced_and_bound():
    # Given the main manifest.
    kinds = {doc["kind"]: doc for doc in load_documents(ROLE_FILE)}
    # Then it has a ServiceAccount, a Role and its RoleBinding, no cluster kinds.
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding"}
    assert kinds["Role"]["metadata"]["namespace"] == NS
    assert kinds["RoleBinding"]["roleRef"]["kind"] == "Role"


def test_inventory_role_reads_only(with_inventory, role_only):
    # Given the optional ClusterRole.
    cluster = [
        Request("list", "", "nodes"),
        Request("get", "", "nodes", "", "", "n"),
        Request("list", "", "pods"),
    ]
    # Then it allows the inventory reads, which the Role alone does not.
    for request in cluster:
        assert with_inventory.can(request), request
        assert not role_only.can(request), request
    assert not with_inventory.can(Request("watch", "", "nodes"))
    assert not with_inventory.can(Request("patch", "", "nodes", "", "", "n"))


# Requests the console really sends.


class RecordingApiClient(k8s.ApiClient):
    """ApiClient that records the method and URL of every request it sends."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        super().__init__(configuration)
        self.requests: list[tuple[str, str]] = []

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.requests.append((method, url))
        return super().call_api(method, url, *args, **kwargs)


def recording_client(kubeconfig: Path) -> RecordingApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.retries = 0
    return RecordingApiClient(configuration)


def fleet_with_ordered_kinds(path: Path) -> Path:
    """Write the demo fleet plus a StatefulSet and a LeaderWorkerSet variant."""
    fleet = json.loads(DEMO_FLEET.read_text())
    common = {"accelerator": "L4", "replicas": 1, "min_replicas": 1}
    fleet["variants"] += [
        {"name": "llama-8b-l4-sts", "kind": "StatefulSet", "max_replicas": 2, **common},
        {
            "name": "llama-8b-l4-lws",
            "kind": "LeaderWorkerSet",
            "group_size": 2,
            "gpus_per_replica": 2,
            "max_replicas": 2,
            **common,
        },
    ]
    path.write_text(json.dumps(fleet))
    return path


@pytest.fixture
def fleet(tmp_path) -> Path:
    return fleet_with_ordered_kinds(tmp_path / "fleet.json")


@pytest.fixture
def emulator(tmp_path, settings, fleet):
    with Emulator(
        fleet,
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


def exercise_console(emu: Emulator, api_client: RecordingApiClient) -> None:
    """Run a cycle, an election, and a scale-up and scale-down of each kind."""
    actuator = Actuator(api_client)
    emu.advance(30.0)
    CycleService(actuator=actuator).run()
    elector = leader.LeaderElector(
        k8s.CoordinationV1Api(api_client), identity="console-1", namespace=NS
    )
    elector.acquire_or_renew()
    elector.acquire_or_renew()
    elector.observe()
    for name in ("llama-8b-l4", "llama-8b-l4-sts", "llama-8b-l4-lws"):
        variant = Variant.objects.get(name=name)
        actuator.read_hpa_status(variant)
        actuator.read_grace_period(variant)
        actuator.set_replicas(variant, 2)
        emu.advance(60.0)
        victim = emu.pod_names(name)[0]
        actuator.set_replicas(variant, 1, victim_pod=victim)


@pytest.fixture
def console_requests(db, emulator, fleet) -> list[Request]:
    """Every request the console sent while exercised against the emulator."""
    call_command("load_demo", "--fleet", str(fleet), stdout=io.StringIO())
    api_client = recording_client(emulator.kubeconfig_path)
    exercise_console(emulator, api_client)
    return [parse_request(method, url) for method, url in api_client.requests]


@pytest.mark.emulator
def test_every_console_request_is_allowed(
    console_requests, role_only, with_inventory, with_annotations
):
    # Given the requests of a cycle, an election and changes of every kind.
    requests = console_requests
    seen = {(r.verb, r.group, r.resource_path) for r in requests}
    # Then it sent the writes this test is about.
    assert ("patch", "apps", "deployments/scale") in seen
    assert ("patch", "apps", "statefulsets/scale") in seen
    assert ("patch", LWS, "leaderworkersets/scale") in seen
    assert ("patch", "", "pods") in seen
    assert ("create", "", "events") in seen
    assert ("update", "coordination.k8s.io", "leases") in seen
    # And the main Role allows every namespaced request but the annotation
    # patches of the workloads, which the optional Role allows.
    namespaced = [r for r in requests if r.namespace]
    denied = [r for r in namespaced if not role_only.can(r)]
    assert {(r.verb, r.resource) for r in denied} == {
        ("patch", "deployments"),
        ("patch", "statefulsets"),
        ("patch", "leaderworkersets"),
    }
    assert all(not r.subresource for r in denied)
    assert all(with_annotations.can(r) for r in namespaced)
    # And cluster-scope requests are only the optional inventory reads.
    cluster = {(r.verb, r.group, r.resource) for r in requests if not r.namespace}
    assert cluster <= INVENTORY_REQUESTS
    assert all(with_inventory.can(r) for r in requests if not r.namespace)


@pytest.mark.emulator
def test_roles_grant_only_requests_sent(console_requests, with_annotations):
    # Given the namespaced requests the console sent.
    sent = {(r.verb, r.group, r.resource_path) for r in console_requests if r.namespace}
    # Then the Role and the optional annotations Role grant exactly those.
    assert with_annotations.grants(NS) == sent
