"""Kubernetes JSON for the emulated cluster's objects.

The shapes follow the Kubernetes API (core/v1, apps/v1, autoscaling/v1,
leaderworkerset.x-k8s.io/v1) as far as the official Python client's models
need to deserialize them.

A LeaderWorkerSet group is one engine pod in the model: its leader. The
group's workers are listed as pods too, with their labels and their share
of the group's GPUs, but serve no metrics.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fleetsim.engine import Cluster, Deployment, Node, Pod

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
CONTAINER_IMAGE = "vllm/vllm-openai:latest"
CONTAINER_PORT = 8000
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
LWS_SIZE_ANNOTATION = "leaderworkerset.sigs.k8s.io/size"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
STS_POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# Plural resource names of the workload kinds, as in API paths.
RESOURCES = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "LeaderWorkerSet": "leaderworkersets",
}


class Clock:
    """Maps simulated seconds to wall-clock timestamps."""

    def __init__(self, epoch: datetime) -> None:
        self.epoch = epoch

    def stamp(self, sim_s: float) -> str:
        moment = self.epoch + timedelta(seconds=sim_s)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """Return a Kubernetes `Status` object for an error response."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _container(cluster: Cluster, deployment: Deployment) -> dict[str, Any]:
    variant = deployment.variant
    gpus = str(variant.gpus_per_replica // variant.group_size)
    return {
        "name": "vllm",
        "image": CONTAINER_IMAGE,
        "args": [
            "--model",
            cluster.fleet.model,
            "--max-num-seqs",
            str(variant.engine.max_num_seqs),
            "--max-model-len",
            str(variant.engine.max_model_len),
            "--max-num-batched-tokens",
            str(variant.engine.max_num_batched_tokens),
        ],  # fmt: skip
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "resources": {"requests": {GPU_RESOURCE: gpus}, "limits": {GPU_RESOURCE: gpus}},
    }


def workload_json(
    cluster: Cluster, deployment: Deployment, clock: Clock
) -> dict[str, Any]:
    """Return the Deployment, StatefulSet or LeaderWorkerSet object of a variant."""
    if deployment.kind == "LeaderWorkerSet":
        return _lws_json(cluster, deployment, clock)
    return deployment_json(cluster, deployment, clock)


def _metadata(cluster: Cluster, deployment: Deployment, clock: Clock) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": deployment.name,
        "namespace": cluster.fleet.namespace,
        "uid": deployment.uid,
        "resourceVersion": str(deployment.resource_version),
        "generation": deployment.generation,
        "creationTimestamp": clock.stamp(0.0),
        "labels": {"app": deployment.name},
    }
    if deployment.annotations:
        metadata["annotations"] = dict(deployment.annotations)
    return metadata


def _pod_template(
    cluster: Cluster, deployment: Deployment, labels: dict[str, str]
) -> dict[str, Any]:
    accelerator = deployment.variant.accelerator
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            "containers": [_container(cluster, deployment)],
            "nodeSelector": {GPU_PRODUCT_LABEL: cluster.fleet.node_labels[accelerator]},
            "terminationGracePeriodSeconds": (
                deployment.variant.termination_grace_period_s
            ),
        },
    }


def deployment_json(
    cluster: Cluster, deployment: Deployment, clock: Clock
) -> dict[str, Any]:
    """Return the Deployment, or the StatefulSet of a variant of that kind."""
    counts = cluster.deployment_counts(deployment.name)
    labels = {"app": deployment.name}
    spec: dict[str, Any] = {
        "replicas": deployment.replicas,
        "selector": {"matchLabels": dict(labels)},
        "template": _pod_template(cluster, deployment, labels),
    }
    status = {
        "observedGeneration": deployment.generation,
        "replicas": counts["current"],
        "updatedReplicas": counts["current"],
        "readyReplicas": counts["ready"],
        "availableReplicas": counts["ready"],
    }
    if deployment.kind == "StatefulSet":
        spec["serviceName"] = deployment.name
        spec["podManagementPolicy"] = "OrderedReady"
        status["currentReplicas"] = counts["current"]
    else:
        status["unavailableReplicas"] = counts["current"] - counts["ready"]
    return {
        "apiVersion": "apps/v1",
        "kind": deployment.kind,
        "metadata": _metadata(cluster, deployment, clock),
        "spec": spec,
        "status": status,
    }


def _lws_json(cluster: Cluster, deployment: Deployment, clock: Clock) -> dict[str, Any]:
    counts = cluster.deployment_counts(deployment.name)
    labels = {LWS_NAME_LABEL: deployment.name}
    template = _pod_template(cluster, deployment, labels)
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": _metadata(cluster, deployment, clock),
        "spec": {
            "replicas": deployment.replicas,
            "leaderWorkerTemplate": {
                "size": deployment.variant.group_size,
                "leaderTemplate": template,
                "workerTemplate": template,
                "restartPolicy": "RecreateGroupOnPodRestart",
            },
            "startupPolicy": "LeaderCreated",
        },
        "status": {
            "replicas": counts["current"],
            "readyReplicas": counts["ready"],
            "hpaPodSelector": _scale_selector(deployment),
        },
    }


def _scale_selector(deployment: Deployment) -> str:
    if deployment.kind == "LeaderWorkerSet":
        return f"{LWS_NAME_LABEL}={deployment.name},{LWS_WORKER_INDEX_LABEL}=0"
    return f"app={deployment.name}"


def scale_json(
    cluster: Cluster, deployment: Deployment, clock: Clock
) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": deployment.name,
            "namespace": cluster.fleet.namespace,
            "uid": deployment.uid,
            "resourceVersion": str(deployment.resource_version),
            "creationTimestamp": clock.stamp(0.0),
        },
        "spec": {"replicas": deployment.replicas},
        "status": {
            "replicas": cluster.deployment_counts(deployment.name)["current"],
            "selector": _scale_selector(deployment),
        },
    }


def pod_labels(deployment: Deployment, pod: Pod) -> dict[str, str]:
    """Return the labels that the workload's controller sets on its pod."""
    if deployment.kind == "StatefulSet":
        return {
            "app": deployment.name,
            "controller-revision-hash": f"{deployment.name}-{deployment.template_hash}",
            POD_INDEX_LABEL: str(pod.ordinal),
            STS_POD_NAME_LABEL: pod.name,
        }
    if deployment.kind == "LeaderWorkerSet":
        return {
            LWS_NAME_LABEL: deployment.name,
            LWS_GROUP_INDEX_LABEL: str(pod.ordinal),
            LWS_WORKER_INDEX_LABEL: "0",
        }
    return {"app": deployment.name, "pod-template-hash": deployment.template_hash}


def worker_pods_json(
    cluster: Cluster, pod: Pod, clock: Clock, port: int
) -> list[dict[str, Any]]:
    """Return the worker pods of a LeaderWorkerSet group whose leader is `pod`.

    Workers share the leader's node, phase and readiness. They have no
    metrics route, because the leader reports the group's engine.
    """
    deployment = cluster.deployments[pod.deployment]
    workers = []
    for index in range(1, deployment.variant.group_size):
        worker = pod_json(cluster, pod, clock, port)
        metadata = worker["metadata"]
        metadata["name"] = f"{pod.name}-{index}"
        metadata["uid"] = f"{pod.uid[:-4]}{index:04d}"
        metadata["labels"][LWS_WORKER_INDEX_LABEL] = str(index)
        for key in ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"):
            metadata["annotations"].pop(key, None)
        workers.append(worker)
    return workers


def pod_json(cluster: Cluster, pod: Pod, clock: Clock, port: int) -> dict[str, Any]:
    deployment = cluster.deployments[pod.deployment]
    now = cluster.now
    phase = pod.phase(now, cluster.startup_delay_s)
    ready = pod.is_ready(now)
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": f"/pods/{pod.name}/metrics",
        **pod.annotations,
    }
    metadata: dict[str, Any] = {
        "name": pod.name,
        "namespace": cluster.fleet.namespace,
        "uid": pod.uid,
        "resourceVersion": str(pod.resource_version),
        "creationTimestamp": clock.stamp(pod.created_at),
        "labels": pod_labels(deployment, pod),
        "annotations": annotations,
        "ownerReferences": [_owner(deployment)],
    }
    if deployment.kind == "LeaderWorkerSet":
        annotations[LWS_SIZE_ANNOTATION] = str(deployment.variant.group_size)
    grace_s = deployment.variant.termination_grace_period_s
    if pod.deleted_at is not None:
        metadata["deletionTimestamp"] = clock.stamp(pod.deleted_at)
        metadata["deletionGracePeriodSeconds"] = grace_s
    spec: dict[str, Any] = {
        "containers": [_container(cluster, deployment)],
        "terminationGracePeriodSeconds": grace_s,
    }
    if pod.node is not None:
        spec["nodeName"] = pod.node.name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
        "status": _pod_status(pod, phase, ready, clock),
    }


def _owner(deployment: Deployment) -> dict[str, Any]:
    if deployment.kind == "Deployment":
        api_version, kind = "apps/v1", "ReplicaSet"
        name = f"{deployment.name}-{deployment.template_hash}"
    else:
        # A LeaderWorkerSet runs its leaders through a StatefulSet of its name.
        api_version, kind, name = "apps/v1", "StatefulSet", deployment.name
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": deployment.uid,
        "controller": True,
    }


def _pod_status(pod: Pod, phase: str, ready: bool, clock: Clock) -> dict[str, Any]:
    flag = "True" if ready else "False"
    scheduled = "True" if pod.scheduled_at is not None else "False"
    conditions = [
        {"type": "PodScheduled", "status": scheduled},
        {"type": "Initialized", "status": scheduled},
        {"type": "ContainersReady", "status": flag},
        {"type": "Ready", "status": flag},
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "qosClass": "Burstable",
    }
    if pod.scheduled_at is None:
        conditions[0]["reason"] = "Unschedulable"
        conditions[0]["message"] = f"0 nodes have a free {GPU_RESOURCE}"
        return status
    started = clock.stamp(pod.scheduled_at)
    status.update(podIP="127.0.0.1", hostIP="127.0.0.1", startTime=started)
    state: dict[str, Any]
    if pod.crash_looping:
        restarts = pod.restart_count
        message = f"back-off restarting failed container vllm ({restarts} restarts)"
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
    elif phase == "Pending":
        state = {"waiting": {"reason": "ContainerCreating"}}
    else:
        state = {"running": {"startedAt": started}}
    status["containerStatuses"] = [
        {
            "name": "vllm",
            "image": CONTAINER_IMAGE,
            "imageID": "",
            "ready": ready,
            "started": phase == "Running" and not pod.crash_looping,
            "restartCount": pod.restart_count,
            "state": state,
        }
    ]
    return status


def node_json(node: Node, clock: Clock) -> dict[str, Any]:
    gpus = str(node.gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "uid": node.uid,
            "resourceVersion": "1",
            "creationTimestamp": clock.stamp(0.0),
            "labels": {
                "kubernetes.io/hostname": node.name,
                GPU_PRODUCT_LABEL: node.label_value,
                "nvidia.com/gpu.count": gpus,
            },
        },
        "spec": {},
        "status": {
            "capacity": {GPU_RESOURCE: gpus},
            "allocatable": {GPU_RESOURCE: gpus},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def list_json(
    kind: str, api_version: str, items: list[dict[str, Any]], revision: int
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": str(revision)},
        "items": items,
    }


def match_selector(labels: dict[str, str], selector: str) -> bool:
    """Match equality-based label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`).

    Raises ValueError for set-based selectors, which the emulator does not serve.
    """
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if " in " in term or " notin " in term or "(" in term:
            raise ValueError(f"set-based label selector {term!r} is not supported")
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def match_node_field(node_name: str, selector: str) -> bool:
    """Match a `spec.nodeName` field selector (`=`, `==` or `!=`); "" matches all.

    Raises ValueError for any other field, which the emulator does not serve.
    """
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        if key.strip() != "spec.nodeName":
            raise ValueError(f"field selector {term!r} is not supported")
        if (node_name == value.strip()) == negate:
            return False
    return True


def now_epoch() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
