"""The shipped Kubernetes manifests and examples are valid and run safely.

Every object in deploy/ and docs/examples/ is validated offline with
kubernetes-validate, in strict mode (unknown fields are errors), against the
JSON schemas of Kubernetes KUBERNETES_VERSION that the package bundles. The
Kustomization and KEDA's ScaledObject have no schema there, so their
structure is checked field by field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.conf import settings

from wva_web.celery import app as celery_app
from wva_web.simulate import conf as simulate_conf

BASE_DIR = Path(settings.BASE_DIR)
DEPLOY_DIR = BASE_DIR / "deploy"
KUBERNETES_DIR = DEPLOY_DIR / "kubernetes"
EXAMPLES_DIR = BASE_DIR / "docs" / "examples"
KUBERNETES_VERSION = "1.35"
SERVICE_ACCOUNT = "wva-console"
NAMESPACE = "wva-system"
# Kinds with no schema in kubernetes-validate, checked by the tests below.
UNSCHEMATISED = {
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}
# The example Secret contains placeholders, so kustomization.yaml leaves it out.
SECRET_EXAMPLE = "secret.example.yaml"
COMPARE_WORKER = "wva-compare-worker"
CELERY_WORKER = ["celery", "--app", "wva_web", "worker"]


def manifest_files() -> list[Path]:
    files = [*DEPLOY_DIR.rglob("*.yaml"), *EXAMPLES_DIR.rglob("*.yaml")]
    return sorted(files)


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def all_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in manifest_files() for doc in documents(path)]


def objects_of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in all_objects() if doc.get("kind") == kind]


def deployments() -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for path, doc in all_objects()
        if doc["kind"] == "Deployment" and path.parent == KUBERNETES_DIR
    }


def pod_specs() -> dict[str, dict[str, Any]]:
    return {
        name: doc["spec"]["template"]["spec"] for name, doc in deployments().items()
    }


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def object_id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.relative_to(BASE_DIR)}:{doc['kind']}/{doc['metadata']['name']}"


SCHEMATISED = [
    item
    for item in all_objects()
    if (item[1]["apiVersion"], item[1]["kind"]) not in UNSCHEMATISED
]


def test_manifest_folders_have_files():
    names = {path.name for path in manifest_files()}
    assert {"web.yaml", "worker.yaml", "beat.yaml", "kustomization.yaml"} <= names
    assert {"hpa-external.yaml", "keda-scaledobject.yaml"} <= names


@pytest.mark.parametrize("item", SCHEMATISED, ids=object_id)
def test_object_matches_kubernetes_schema(item):
    path, doc = item
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        location = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{object_id(item)} is invalid at {location}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{path}: {exc.message}")


def test_every_deployment_uses_service_account():
    pods = pod_specs()
    assert set(pods) == {"wva-web", "wva-worker", "wva-beat", COMPARE_WORKER}
    for name, pod in pods.items():
        if name == COMPARE_WORKER:
            continue
        assert pod["serviceAccountName"] == SERVICE_ACCOUNT, name


def test_compare_worker_has_no_api_token():
    pod = pod_specs()[COMPARE_WORKER]
    assert "serviceAccountName" not in pod
    assert pod["automountServiceAccountToken"] is False


def test_service_account_and_binding_exist():
    accounts = objects_of_kind("ServiceAccount")
    assert {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE} in [
        {"name": a["metadata"]["name"], "namespace": a["metadata"]["namespace"]}
        for a in accounts
    ]
    subjects = [
        subject
        for binding in objects_of_kind("RoleBinding")
        if binding["roleRef"]["kind"] == "Role"
        for subject in binding["subjects"]
    ]
    assert {
        "kind": "ServiceAccount",
        "name": SERVICE_ACCOUNT,
        "namespace": NAMESPACE,
    } in subjects


def test_every_container_runs_as_non_root():
    for name, pod in pod_specs().items():
        pod_context = pod.get("securityContext", {})
        for container in containers(pod):
            context = {**pod_context, **container.get("securityContext", {})}
            where = f"{name}/{container['name']}"
            assert context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", 0) != 0, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where


def test_every_container_sets_resource_requests():
    for name, pod in pod_specs().items():
        for container in containers(pod):
            requests = container.get("resources", {}).get("requests", {})
            where = f"{name}/{container['name']}"
            assert "cpu" in requests, where
            assert "memory" in requests, where
            assert "memory" in container["resources"].get("limits", {}), where


def test_every_container_reads_config_and_secret():
    for name, pod in pod_specs().items():
        for container in containers(pod):
            sources = container.get("envFrom", [])
            assert {"configMapRef": {"name": "wva-console"}} in sources, name
            assert {"secretRef": {"name": "wva-console"}} in sources, name
    assert [doc["metadata"]["name"] for doc in objects_of_kind("ConfigMap")] == [
        "wva-console"
    ]
    assert [doc["metadata"]["name"] for doc in objects_of_kind("Secret")] == [
        "wva-console"
    ]


def test_image_commands_match_roles():
    pods = pod_specs()
    (web,) = pods["wva-web"]["containers"]
    (worker,) = pods["wva-worker"]["containers"]
    (beat,) = pods["wva-beat"]["containers"]
    # The web container runs the image's default command (gunicorn).
    assert "command" not in web
    (compare,) = pods[COMPARE_WORKER]["containers"]
    assert worker["command"] == CELERY_WORKER
    assert compare["command"] == CELERY_WORKER
    assert beat["command"] == ["celery", "--app", "wva_web", "beat"]


def test_web_has_readiness_probe_on_its_port():
    (web,) = pod_specs()["wva-web"]["containers"]
    probe = web["readinessProbe"]["httpGet"]
    assert probe["port"] in {port["name"] for port in web["ports"]}
    assert probe["path"] == "/login/"
    # Django rejects a Host outside WVA_ALLOWED_HOSTS, so the probe sends one in it.
    (config,) = objects_of_kind("ConfigMap")
    allowed = config["data"]["WVA_ALLOWED_HOSTS"].split(",")
    assert {"name": "Host", "value": "localhost"} in probe["httpHeaders"]
    assert "localhost" in allowed


def test_service_selects_web_pods():
    (service,) = objects_of_kind("Service")
    web = deployments()["wva-web"]
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_beat_is_single_and_recreated():
    beat = deployments()["wva-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_beat_init_creates_cycle_schedule():
    (init,) = pod_specs()["wva-beat"]["initContainers"]
    script = " ".join(init["command"])
    assert "manage.py migrate --noinput" in script
    assert "ensure_cycle_schedule()" in script


def worker_queues(container: dict[str, Any]) -> set[str] | None:
    """Return the queues a container's Celery worker consumes, or None if none runs.

    A worker started without `--queues` (or `-Q`) reads the default queue.
    """
    argv = [*container.get("command", []), *container.get("args", [])]
    if argv[:1] != ["celery"] or "worker" not in argv:
        return None
    for index, arg in enumerate(argv):
        if arg in ("--queues", "-Q"):
            return set(argv[index + 1].split(","))
        if arg.startswith("--queues="):
            return set(arg.removeprefix("--queues=").split(","))
    return {celery_app.conf.task_default_queue}


def task_queues() -> dict[str, str]:
    """Return the queue that the Celery router sends each console task to."""
    celery_app.loader.import_default_modules()
    queues = {}
    for name in celery_app.tasks:
        if not name.startswith("wva."):
            continue
        route = celery_app.amqp.router.route({}, name)
        queues[name] = route["queue"].name
    return queues


def test_task_queues_found():
    queues = task_queues()
    assert queues["wva.run_control_cycle"] == celery_app.conf.task_default_queue
    assert queues["wva.run_comparison"] == simulate_conf.QUEUE


def test_every_task_queue_has_worker():
    consumed: dict[str, list[str]] = {}
    for name, pod in pod_specs().items():
        for container in pod["containers"]:
            for queue in worker_queues(container) or set():
                consumed.setdefault(queue, []).append(name)
    for task, queue in task_queues().items():
        assert queue in consumed, f"no Deployment consumes {queue!r}, used by {task}"


def test_compare_worker_keeps_one_node_name():
    compare = deployments()[COMPARE_WORKER]
    (container,) = compare["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    # A replaced pod fails the runs left by its predecessor only when both
    # have one node name, and only one pod may hold that name at a time.
    assert args[args.index("--hostname") + 1] == "compare@wva-compare-worker"
    assert args[args.index("--concurrency") + 1] == "1"
    assert worker_queues(container) == {"comparisons"}
    assert compare["spec"]["replicas"] == 1
    assert compare["spec"]["strategy"] == {"type": "Recreate"}


def test_compare_worker_tmp_is_writable():
    pod = pod_specs()[COMPARE_WORKER]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_worker_grace_outlasts_hard_time_limit():
    pod = pod_specs()["wva-worker"]
    assert pod["terminationGracePeriodSeconds"] > settings.WVA_CYCLE_HARD_LIMIT_S


def test_kustomization_lists_existing_files():
    (kustomization,) = documents(KUBERNETES_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    resources = kustomization["resources"]
    for resource in resources:
        assert (KUBERNETES_DIR / resource).is_file(), resource
    # Files whose first line starts with "# Optional" grant extra rights, so
    # they stay out of the default set. Every other manifest is in it.
    shipped = {
        path.name
        for path in KUBERNETES_DIR.glob("*.yaml")
        if not path.read_text().startswith("# Optional")
    }
    expected = shipped - {SECRET_EXAMPLE, "kustomization.yaml"}
    assert set(resources) == expected
    images = {image["name"] for image in kustomization["images"]}
    used = {c["image"] for pod in pod_specs().values() for c in containers(pod)}
    assert used == images


def test_hpa_example_follows_desired_replicas():
    (hpa,) = documents(EXAMPLES_DIR / "hpa-external.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "wva_desired_replicas"
    labels = metric["external"]["metric"]["selector"]["matchLabels"]
    assert labels["variant_name"] == hpa["spec"]["scaleTargetRef"]["name"]
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}


def test_keda_example_structure():
    # KEDA's CRD schema is not bundled with kubernetes-validate, so the
    # fields the prometheus scaler needs are checked here one by one.
    (scaled,) = documents(EXAMPLES_DIR / "keda-scaledobject.yaml")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["kind"] == "ScaledObject"
    spec = scaled["spec"]
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "triggers",
    }
    assert spec["scaleTargetRef"]["name"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metricType"] == "AverageValue"
    metadata = trigger["metadata"]
    assert {"serverAddress", "query", "threshold"} <= set(metadata)
    # KEDA's CRD types trigger metadata as a map of strings.
    assert all(isinstance(value, str) for value in metadata.values())
    assert metadata["threshold"] == "1"
    query = metadata["query"]
    assert re.search(r"\bwva_desired_replicas\{", query)
    assert f'variant_name="{spec["scaleTargetRef"]["name"]}"' in query
    # The scrape job's own `namespace` label renames the console's label.
    assert f'exported_namespace="{scaled["metadata"]["namespace"]}"' in query
