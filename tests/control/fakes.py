"""Fake Kubernetes client and metrics source for control-cycle tests.

`FakeKube` replaces AppsV1Api, CoreV1Api and AutoscalingV2Api at once
and returns the kubernetes client's own model objects, so the real
`kube.Actuator` runs against it. Every call is recorded in `calls`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import (
    V1Container,
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Deployment,
    V1DeploymentSpec,
    V1LabelSelector,
    V1Node,
    V1NodeStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
    V1PodTemplateSpec,
    V1ResourceRequirements,
    V1Scale,
    V1ScaleSpec,
    V2CrossVersionObjectReference,
    V2HorizontalPodAutoscaler,
    V2HorizontalPodAutoscalerSpec,
)
from kubernetes.client.exceptions import ApiException

from wva_web.integrations import metrics

NOW = dt.datetime(2026, 1, 5, 12, 0, 0, tzinfo=dt.UTC)
# Pods of a fixture exist from an hour before NOW unless a test sets another time.
STARTED = NOW - dt.timedelta(hours=1)


@dataclass
class FakePod:
    name: str
    phase: str = "Running"
    ready: bool = True
    terminating: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    uid: str = ""
    created_at: dt.datetime = STARTED
    restarts: int = 0
    waiting_reason: str = ""
    node: str = "node-1"
    gpus: int = 1

    def as_v1(self, app: str, index: int) -> V1Pod:
        annotations = {"prometheus.io/port": str(9000 + index), **self.annotations}
        waiting = (
            V1ContainerStateWaiting(reason=self.waiting_reason)
            if self.waiting_reason
            else None
        )
        return V1Pod(
            metadata=V1ObjectMeta(
                name=self.name,
                uid=self.uid or f"uid-{self.name}",
                labels={"app": app},
                annotations=annotations,
                creation_timestamp=self.created_at,
                deletion_timestamp=NOW if self.terminating else None,
            ),
            spec=V1PodSpec(
                containers=[
                    V1Container(
                        name="vllm",
                        resources=V1ResourceRequirements(
                            requests={"nvidia.com/gpu": str(self.gpus)}
                        ),
                    )
                ],
                node_name=None if self.phase == "Pending" else self.node,
            ),
            status=V1PodStatus(
                phase=self.phase,
                pod_ip=None if self.phase == "Pending" else "127.0.0.1",
                conditions=[
                    V1PodCondition(
                        type="Ready", status="True" if self.ready else "False"
                    )
                ],
                container_statuses=[
                    V1ContainerStatus(
                        name="vllm",
                        image="vllm",
                        image_id="",
                        ready=self.ready,
                        restart_count=self.restarts,
                        state=V1ContainerState(waiting=waiting),
                    )
                ],
            ),
        )


@dataclass
class FakeWorkload:
    replicas: int
    pods: list[FakePod]
    grace_period_s: int | None = 600
    gpus_per_pod: int = 1
    annotations: dict[str, str] = field(default_factory=dict)


class FakeKube:
    """AppsV1Api, CoreV1Api and AutoscalingV2Api over in-memory workloads."""

    def __init__(self, namespace: str = "llm") -> None:
        self.namespace = namespace
        self.workloads: dict[str, FakeWorkload] = {}
        self.hpas: dict[str, str] = {}
        # spec.maxReplicas by HPA name; 10 when not set.
        self.hpa_max: dict[str, int] = {}
        # GPU nodes as (name, nvidia.com/gpu.product label, allocatable GPUs).
        self.nodes: list[tuple[str, str, int]] = []
        # Creation time of the pods that a scale-up adds; tests move it along.
        self.clock = NOW
        self.calls: list[tuple[str, ...]] = []
        # Status code raised by every call whose name is a key.
        self.failures: dict[str, int] = {}
        # Bodies of the Events the actuator created.
        self.events: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        replicas: int,
        pods: Sequence[FakePod],
        grace_period_s: int | None = 600,
    ) -> None:
        self.workloads[name] = FakeWorkload(replicas, list(pods), grace_period_s)

    def _record(self, *call: str) -> None:
        self.calls.append(call)
        status = self.failures.get(call[0])
        if status:
            raise ApiException(status=status, reason="injected")

    # AppsV1Api.

    def read_namespaced_deployment(
        self, name: str, namespace: str, **_: Any
    ) -> V1Deployment:
        self._record("read_namespaced_deployment", name)
        if name not in self.workloads:
            raise ApiException(status=404, reason="Not Found")
        return V1Deployment(
            metadata=V1ObjectMeta(name=name, namespace=namespace),
            spec=V1DeploymentSpec(
                replicas=self.workloads[name].replicas,
                selector=V1LabelSelector(match_labels={"app": name}),
                template=V1PodTemplateSpec(
                    metadata=V1ObjectMeta(labels={"app": name}),
                    spec=V1PodSpec(
                        containers=[V1Container(name="vllm")],
                        termination_grace_period_seconds=self.workloads[
                            name
                        ].grace_period_s,
                    ),
                ),
            ),
        )

    def read_namespaced_deployment_scale(
        self, name: str, namespace: str, **_: Any
    ) -> V1Scale:
        self._record("read_namespaced_deployment_scale", name)
        if name not in self.workloads:
            raise ApiException(status=404, reason="Not Found")
        return V1Scale(spec=V1ScaleSpec(replicas=self.workloads[name].replicas))

    def patch_namespaced_deployment_scale(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> V1Scale:
        replicas = int(body["spec"]["replicas"])
        self._record("patch_namespaced_deployment_scale", name, str(replicas))
        workload = self.workloads[name]
        self._scale_pods(workload, name, replicas)
        workload.replicas = replicas
        return V1Scale(spec=V1ScaleSpec(replicas=replicas))

    def patch_namespaced_deployment(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> V1Deployment:
        # The actuator may only record its change in the annotations; a patch
        # of the spec would change the pod template.
        if set(body) != {"metadata"} or set(body["metadata"]) != {"annotations"}:
            raise AssertionError(f"workload patch beyond annotations: {body}")
        self._record("patch_namespaced_deployment", name, "annotations")
        workload = self.workloads[name]
        workload.annotations.update(body["metadata"]["annotations"])
        deployment = self.read_namespaced_deployment(name, namespace)
        deployment.metadata.annotations = dict(workload.annotations)
        return deployment

    def _scale_pods(self, workload: FakeWorkload, name: str, replicas: int) -> None:
        """Add Pending pods, or remove the lowest deletion cost first."""
        live = [pod for pod in workload.pods if not pod.terminating]
        while len(live) < replicas:
            pod = FakePod(
                f"{name}-new{len(workload.pods)}",
                phase="Pending",
                ready=False,
                created_at=self.clock,
            )
            workload.pods.append(pod)
            live.append(pod)
        while len(live) > replicas:
            victim = min(
                live,
                key=lambda p: int(
                    p.annotations.get("controller.kubernetes.io/pod-deletion-cost", "0")
                ),
            )
            workload.pods.remove(victim)
            live.remove(victim)

    # CoreV1Api.

    def _pods(self) -> list[V1Pod]:
        pods = []
        for name, workload in self.workloads.items():
            for index, pod in enumerate(workload.pods):
                pods.append(pod.as_v1(name, index))
        return pods

    def list_namespaced_pod(
        self, namespace: str, label_selector: str = "", **_: Any
    ) -> Any:
        self._record("list_namespaced_pod", label_selector)
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        pods = [
            pod
            for pod in self._pods()
            if all(pod.metadata.labels.get(k) == v for k, v in wanted.items())
        ]
        return _ItemList(pods)

    def list_pod_for_all_namespaces(self, **_: Any) -> Any:
        self._record("list_pod_for_all_namespaces")
        return _ItemList([pod for pod in self._pods() if pod.spec.node_name])

    def patch_namespaced_pod(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> None:
        cost = body["metadata"]["annotations"][
            "controller.kubernetes.io/pod-deletion-cost"
        ]
        self._record("patch_namespaced_pod", name, str(cost))
        for workload in self.workloads.values():
            for pod in workload.pods:
                if pod.name == name:
                    key = "controller.kubernetes.io/pod-deletion-cost"
                    if cost is None:
                        pod.annotations.pop(key, None)
                    else:
                        pod.annotations[key] = cost

    def create_namespaced_event(
        self, namespace: str, body: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self._record("create_namespaced_event", namespace, str(body["reason"]))
        self.events.append(body)
        return body

    def list_node(self, **_: Any) -> Any:
        self._record("list_node")
        nodes = [
            V1Node(
                metadata=V1ObjectMeta(
                    name=name, labels={"nvidia.com/gpu.product": product}
                ),
                status=V1NodeStatus(allocatable={"nvidia.com/gpu": str(gpus)}),
            )
            for name, product, gpus in self.nodes
        ]
        return _ItemList(nodes)

    # AutoscalingV2Api.

    def list_namespaced_horizontal_pod_autoscaler(
        self, namespace: str, **_: Any
    ) -> Any:
        self._record("list_namespaced_horizontal_pod_autoscaler", namespace)
        items = [
            V2HorizontalPodAutoscaler(
                metadata=V1ObjectMeta(name=hpa),
                spec=V2HorizontalPodAutoscalerSpec(
                    max_replicas=self.hpa_max.get(hpa, 10),
                    scale_target_ref=V2CrossVersionObjectReference(
                        api_version="apps/v1", kind="Deployment", name=target
                    ),
                ),
            )
            for hpa, target in self.hpas.items()
        ]
        return _ItemList(items)

    def pod_names(self, workload: str) -> list[str]:
        return [pod.name for pod in self.workloads[workload].pods]


@dataclass
class _ItemList:
    items: list[Any]


def exposition(
    kv: float | str | None = None,
    waiting: float | str | None = 0,
    running: float | str | None = 0,
    kv_name: str = "vllm:kv_cache_usage_perc",
    old_kv: float | str | None = None,
    generated: float = 100.0,
) -> str:
    """Prometheus text of one vLLM pod; None leaves a series out."""
    labels = '{model_name="m",engine="0"}'
    lines = []

    def gauge(name: str, value: float | str | None) -> None:
        if value is None:
            return
        lines.append(f"# TYPE {name} gauge")
        lines.append(f"{name}{labels} {value}")

    gauge(kv_name, kv)
    gauge("vllm:gpu_cache_usage_perc", old_kv)
    gauge("vllm:num_requests_waiting", waiting)
    gauge("vllm:num_requests_running", running)
    lines.append("# TYPE vllm:generation_tokens counter")
    lines.append(f"vllm:generation_tokens_total{labels} {generated}")
    return "\n".join(lines) + "\n"


class FakeMetrics:
    """A metrics source returning fixed expositions or scrape failures per pod.

    Values are exposition text (parsed by the real parser) or an error kind
    such as "http_503", "timeout" or "connection_refused". A pod with no
    entry is reported as a timeout.
    """

    def __init__(
        self, pods: dict[str, str] | None = None, at: dt.datetime = NOW
    ) -> None:
        self.pods = dict(pods or {})
        self.at = at
        self.scraped: list[list[str]] = []

    def scrape(
        self, targets: Sequence[metrics.ScrapeTarget]
    ) -> dict[str, metrics.PodMetrics]:
        self.scraped.append([target.pod for target in targets])
        result = {}
        for target in targets:
            body = self.pods.get(target.pod, "timeout")
            if "\n" in body or body == "":
                result[target.pod] = metrics.parse_exposition(target.pod, body, self.at)
            else:
                result[target.pod] = metrics.failed_sample(
                    target.pod, self.at, body, f"{body} on {target.url}"
                )
        return result
