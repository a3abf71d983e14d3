"""Kubernetes JSON for the emulated cluster's objects.

The shapes follow the Kubernetes API (core/v1, apps/v1, autoscaling/v1) as
far as the official Python client's models need to deserialize them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fleetsim.engine import Cluster, Deployment, Node, Pod

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
CONTAINER_IMAGE = "vllm/vllm-openai:latest"
CONTAINER_PORT = 8000


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
    gpus = str(variant.gpus_per_replica)
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


def deployment_json(
    cluster: Cluster, deployment: Deployment, clock: Clock
) -> dict[str, Any]:
    counts = cluster.deployment_counts(deployment.name)
    labels = {"app": deployment.name}
    accelerator = deployment.variant.accelerator
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment.name,
            "namespace": cluster.fleet.namespace,
            "uid": deployment.uid,
            "resourceVersion": str(deployment.resource_version),
            "generation": deployment.generation,
            "creationTimestamp": clock.stamp(0.0),
            "labels": dict(labels),
        },
        "spec": {
            "replicas": deployment.replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [_container(cluster, deployment)],
                    "nodeSelector": {
                        GPU_PRODUCT_LABEL: cluster.fleet.node_labels[accelerator]
                    },
                    "terminationGracePeriodSeconds": (
                        deployment.variant.termination_grace_period_s
                    ),
                },
            },
        },
        "status": {
            "observedGeneration": deployment.generation,
            "replicas": counts["current"],
            "updatedReplicas": counts["current"],
            "readyReplicas": counts["ready"],
            "availableReplicas": counts["ready"],
            "unavailableReplicas": counts["current"] - counts["ready"],
        },
    }


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
            "selector": f"app={deployment.name}",
        },
    }


def pod_labels(deployment: Deployment) -> dict[str, str]:
    return {"app": deployment.name, "pod-template-hash": deployment.template_hash}


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
        "labels": pod_labels(deployment),
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": f"{deployment.name}-{deployment.template_hash}",
                "uid": deployment.uid,
                "controller": True,
            }
        ],
    }
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
