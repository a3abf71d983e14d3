"""Kubernetes access of the console: every cluster call goes through here.

The actuator changes replica counts only through the scale subresource
(`patch_namespaced_deployment_scale`, `patch_namespaced_stateful_set_scale`)
and never patches a workload's spec, so its Role needs no `patch` on
Deployments. Pods get one annotation, `controller.kubernetes.io/pod-deletion-cost`,
so that a reduction removes the chosen replica.

Errors are split in two: `TransientActuatorError` (409, 429, 5xx, timeouts,
refused connections) may succeed on a later try, `PermanentActuatorError`
(403, 404 and other 4xx) will not without a change by a person.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import urllib3
from django.conf import settings
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

logger = logging.getLogger(__name__)

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Pods with a lower deletion cost are removed first; the default is 0.
VICTIM_COST = "-1000"
GPU_LABELS = ("nvidia.com/gpu.product", "amd.com/gpu.product")
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"
TRANSIENT_STATUSES = frozenset({409, 429})
# Gauge the console publishes for an HPA that actuates from it.
DESIRED_METRIC = "wva_desired_replicas"
# A pod that restarted this often and is not Ready counts as crash-looping.
CRASH_RESTARTS = 3
# Kubernetes sets terminationGracePeriodSeconds to 30 when a template omits it.
DEFAULT_GRACE_PERIOD_S = 30

T = TypeVar("T")


class ActuatorError(Exception):
    """A Kubernetes call failed; `reason` is a short code, `status` the HTTP code."""

    def __init__(self, message: str, reason: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery pickles a task's exception; the default rebuilds it from the
        # message alone, which fails on the required `reason`.
        return type(self), (str(self), self.reason, self.status)


class TransientActuatorError(ActuatorError):
    """A failure that may pass on retry: 409, 429, 5xx, timeout, refused."""


class PermanentActuatorError(ActuatorError):
    """A failure that a retry does not fix: 403 forbidden, 404 not found."""


class Workload(Protocol):
    """The fields of a catalogue variant that name its workload."""

    name: str
    namespace: str
    kind: str
    workload_name: str


@dataclass(frozen=True)
class PodInfo:
    """One pod of a variant as the Kubernetes API reports it."""

    name: str
    uid: str
    phase: str
    ready: bool
    terminating: bool
    pod_ip: str
    metrics_port: int | None
    metrics_path: str
    deletion_cost: str | None
    node_name: str = ""
    waiting_reason: str = ""
    restart_count: int = 0
    created_at: datetime | None = None

    @property
    def pending(self) -> bool:
        return self.phase == "Pending"

    @property
    def crash_looping(self) -> bool:
        """True in CrashLoopBackOff, or not Ready after CRASH_RESTARTS restarts."""
        if self.waiting_reason == "CrashLoopBackOff":
            return True
        return self.restart_count >= CRASH_RESTARTS and not self.ready


@dataclass(frozen=True)
class GpuCount:
    """GPUs of one product label value: allocatable on nodes and requested by pods."""

    allocatable: int
    requested: int

    @property
    def free(self) -> int:
        return max(0, self.allocatable - self.requested)


@dataclass(frozen=True)
class HpaStatus:
    """Status of the HPA that targets a variant's workload, as the API reports it.

    `metric_value` is the current value of the external or object metric
    `wva_desired_replicas` in the HPA's status, or None when the HPA does not
    report that metric. `max_replicas` is `spec.maxReplicas`, the most the
    HPA sets whatever the console publishes; None when not read.
    """

    name: str
    current_replicas: int | None
    desired_replicas: int | None
    metric_value: float | None
    last_scale_time: datetime | None = None
    max_replicas: int | None = None


@dataclass
class ScaleResult:
    """Outcome of `set_replicas`: counts, dry-run flag and the writes made."""

    replicas: int
    previous: int
    dry_run: bool
    calls: list[str] = field(default_factory=list)


def classify(exc: Exception, what: str) -> ActuatorError:
    """Map a client exception to a transient or permanent actuator error."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = f"{what} failed: HTTP {status} {exc.reason or ''}".strip()
        if status in TRANSIENT_STATUSES or status >= 500 or status == 0:
            return TransientActuatorError(message, f"http_{status}", status)
        reasons = {403: "forbidden", 404: "not_found"}
        return PermanentActuatorError(
            message, reasons.get(status, f"http_{status}"), status
        )
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return TransientActuatorError(f"{what} timed out", "timeout")
    return TransientActuatorError(f"{what} failed: {exc}", "connection_error")


def _quantity(value: object) -> int:
    try:
        return int(float(str(value)))
    except ValueError:
        return 0


class Actuator:
    """Reads and scales the workloads of variants.

    With `dry_run` on, every write is logged and skipped; reads still go
    to the cluster.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient | None = None,
        *,
        apps: Any = None,
        core: Any = None,
        autoscaling: Any = None,
        dry_run: bool | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.apps = apps or k8s.AppsV1Api(api_client)
        self.core = core or k8s.CoreV1Api(api_client)
        self.autoscaling = autoscaling or k8s.AutoscalingV2Api(api_client)
        self.dry_run = settings.WVA_DRY_RUN if dry_run is None else dry_run
        self.timeout_s = float(timeout_s or settings.WVA_KUBE_TIMEOUT_S)

    def _call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, _request_timeout=self.timeout_s, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise classify(exc, what) from exc

    # Reads.

    def read_workload(self, variant: Workload) -> Any:
        """Return the Deployment or StatefulSet object of the variant."""
        what = f"read {variant.kind} {variant.namespace}/{variant.workload_name}"
        if variant.kind == "StatefulSet":
            reader = self.apps.read_namespaced_stateful_set
        elif variant.kind == "Deployment":
            reader = self.apps.read_namespaced_deployment
        else:
            raise PermanentActuatorError(
                f"{variant.kind} is not supported; use a Deployment or StatefulSet",
                "unsupported_kind",
            )
        return self._call(what, reader, variant.workload_name, variant.namespace)

    def read_grace_period(self, variant: Workload) -> int:
        """Return `terminationGracePeriodSeconds` of the workload's pod template."""
        workload = self.read_workload(variant)
        template = getattr(workload.spec, "template", None)
        spec = getattr(template, "spec", None)
        seconds = getattr(spec, "termination_grace_period_seconds", None)
        return DEFAULT_GRACE_PERIOD_S if seconds is None else int(seconds)

    def read_replicas(self, variant: Workload) -> int:
        """Return `spec.replicas` of the variant's scale subresource."""
        what = f"read scale of {variant.namespace}/{variant.workload_name}"
        if variant.kind == "StatefulSet":
            reader = self.apps.read_namespaced_stateful_set_scale
        else:
            reader = self.apps.read_namespaced_deployment_scale
        scale = self._call(what, reader, variant.workload_name, variant.namespace)
        return int(scale.spec.replicas or 0)

    def list_pods(self, variant: Workload) -> list[PodInfo]:
        """List the variant's pods by the workload's `spec.selector.matchLabels`."""
        workload = self.read_workload(variant)
        labels = workload.spec.selector.match_labels or {}
        if not labels:
            raise PermanentActuatorError(
                f"{variant.workload_name} has no spec.selector.matchLabels",
                "no_selector",
            )
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        what = f"list pods of {variant.namespace}/{variant.workload_name}"
        pods = self._call(
            what,
            self.core.list_namespaced_pod,
            variant.namespace,
            label_selector=selector,
        )
        return sorted((pod_info(pod) for pod in pods.items), key=lambda p: p.name)

    def find_hpa(self, variant: Workload) -> str | None:
        """Return the name of an HPA whose scaleTargetRef is the variant's workload."""
        what = f"list HPAs in {variant.namespace}"
        hpas = self._call(
            what,
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            variant.namespace,
        )
        for hpa in hpas.items:
            ref = hpa.spec.scale_target_ref
            if ref.kind == variant.kind and ref.name == variant.workload_name:
                return str(hpa.metadata.name)
        return None

    def read_hpa_status(self, variant: Workload) -> HpaStatus | None:
        """Return the status of the HPA that targets the variant's workload, if any."""
        what = f"list HPAs in {variant.namespace}"
        hpas = self._call(
            what,
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            variant.namespace,
        )
        for hpa in hpas.items:
            ref = hpa.spec.scale_target_ref
            if ref.kind == variant.kind and ref.name == variant.workload_name:
                return hpa_status(hpa)
        return None

    def gpu_inventory(self, namespaces: Sequence[str] = ()) -> dict[str, GpuCount]:
        """Count GPUs per product label value: node allocatable and pod requests.

        Pods are listed in all namespaces. When that is forbidden or not
        served, pods of `namespaces` only are counted. Raises an
        ActuatorError when nodes or pods cannot be listed; the caller treats
        that as an unknown inventory, never as zero.
        """
        nodes = self._call("list nodes", self.core.list_node)
        product_of_node: dict[str, str] = {}
        counts: dict[str, list[int]] = {}
        for node in nodes.items:
            labels = node.metadata.labels or {}
            product = next((labels[key] for key in GPU_LABELS if key in labels), "")
            if not product:
                continue
            allocatable = node.status.allocatable or {}
            gpus = sum(_quantity(allocatable.get(name, 0)) for name in GPU_RESOURCES)
            product_of_node[node.metadata.name] = product
            counts.setdefault(product, [0, 0])[0] += gpus
        for pod in self._scheduled_pods(namespaces):
            product = product_of_node.get(pod.spec.node_name or "")
            if not product or pod.status.phase in ("Succeeded", "Failed"):
                continue
            counts[product][1] += _pod_gpu_requests(pod)
        return {name: GpuCount(total, used) for name, (total, used) in counts.items()}

    def _scheduled_pods(self, namespaces: Sequence[str]) -> list[Any]:
        try:
            pods = self._call(
                "list pods in all namespaces",
                self.core.list_pod_for_all_namespaces,
                field_selector="spec.nodeName!=",
            )
            return list(pods.items)
        except PermanentActuatorError as exc:
            if not namespaces:
                raise
            # NOTE: GPUs requested by pods outside these namespaces are not counted.
            logger.info(
                "counting GPU requests in %s only: %s", ",".join(namespaces), exc
            )
        scheduled: list[Any] = []
        for namespace in namespaces:
            pods = self._call(
                f"list pods in {namespace}", self.core.list_namespaced_pod, namespace
            )
            scheduled.extend(pod for pod in pods.items if pod.spec.node_name)
        return scheduled

    # Writes.

    def set_replicas(
        self,
        variant: Workload,
        replicas: int,
        victim_pod: str = "",
        dry_run: bool = False,
    ) -> ScaleResult:
        """Set the replica count through the scale subresource.

        Before a reduction, leftover deletion-cost annotations on the other
        pods are removed and the victim gets the lowest cost, so Kubernetes
        deletes that pod. A 409 on the scale patch is retried once after a
        fresh read.
        """
        dry = dry_run or self.dry_run
        previous = self.read_replicas(variant)
        result = ScaleResult(replicas=replicas, previous=previous, dry_run=dry)
        if replicas < previous and victim_pod:
            self._mark_victim(variant, victim_pod, dry, result.calls)
        if dry:
            logger.info(
                "dry run: would scale %s/%s from %s to %s replicas (victim %s)",
                variant.namespace,
                variant.workload_name,
                previous,
                replicas,
                victim_pod or "-",
            )
            return result
        try:
            self._patch_scale(variant, replicas)
        except TransientActuatorError as exc:
            if exc.status != 409:
                raise
            logger.warning(
                "scale of %s hit a conflict, retrying once", variant.workload_name
            )
            result.previous = self.read_replicas(variant)
            self._patch_scale(variant, replicas)
        result.calls.append(f"scale:{replicas}")
        return result

    def _patch_scale(self, variant: Workload, replicas: int) -> None:
        body = {"spec": {"replicas": int(replicas)}}
        what = f"patch scale of {variant.namespace}/{variant.workload_name}"
        if variant.kind == "StatefulSet":
            patch = self.apps.patch_namespaced_stateful_set_scale
        else:
            patch = self.apps.patch_namespaced_deployment_scale
        self._call(what, patch, variant.workload_name, variant.namespace, body)

    def _mark_victim(
        self, variant: Workload, victim_pod: str, dry: bool, calls: list[str]
    ) -> None:
        pods = self.list_pods(variant)
        if victim_pod not in {pod.name for pod in pods}:
            raise PermanentActuatorError(
                f"victim pod {victim_pod} is not a pod of {variant.workload_name}",
                "victim_not_found",
            )
        for pod in pods:
            if pod.name != victim_pod and pod.deletion_cost is not None:
                self._annotate(variant, pod.name, None, dry)
                calls.append(f"reset:{pod.name}")
        self._annotate(variant, victim_pod, VICTIM_COST, dry)
        calls.append(f"victim:{victim_pod}")

    def _annotate(
        self, variant: Workload, pod: str, cost: str | None, dry: bool
    ) -> None:
        if dry:
            logger.info("dry run: would set %s=%s on pod %s", DELETION_COST, cost, pod)
            return
        # A null value removes the annotation in a merge patch.
        body = {"metadata": {"annotations": {DELETION_COST: cost}}}
        self._call(
            f"annotate pod {variant.namespace}/{pod}",
            self.core.patch_namespaced_pod,
            pod,
            variant.namespace,
            body,
        )


def _pod_gpu_requests(pod: Any) -> int:
    total = 0
    for container in pod.spec.containers or []:
        resources = container.resources
        if resources is None:
            continue
        requests = resources.requests or resources.limits or {}
        total += sum(_quantity(requests.get(name, 0)) for name in GPU_RESOURCES)
    return total


def _is_ready(pod: Any) -> bool:
    for condition in pod.status.conditions or []:
        if condition.type == "Ready":
            return str(condition.status) == "True"
    return False


def _waiting_reason(pod: Any) -> str:
    for status in pod.status.container_statuses or []:
        waiting = status.state.waiting if status.state is not None else None
        if waiting is not None and waiting.reason:
            return str(waiting.reason)
    return ""


def _restart_count(pod: Any) -> int:
    return max(
        (
            int(status.restart_count or 0)
            for status in pod.status.container_statuses or []
        ),
        default=0,
    )


def pod_info(pod: Any) -> PodInfo:
    """Convert a V1Pod into the fields the cycle uses."""
    annotations = pod.metadata.annotations or {}
    port = annotations.get(PORT_ANNOTATION)
    return PodInfo(
        name=str(pod.metadata.name),
        uid=str(pod.metadata.uid or ""),
        phase=str(pod.status.phase or "Unknown"),
        ready=_is_ready(pod),
        terminating=pod.metadata.deletion_timestamp is not None,
        pod_ip=str(pod.status.pod_ip or ""),
        metrics_port=int(port) if port and str(port).isdigit() else None,
        metrics_path=str(annotations.get(PATH_ANNOTATION) or "/metrics"),
        deletion_cost=annotations.get(DELETION_COST),
        node_name=str(pod.spec.node_name or "") if pod.spec is not None else "",
        waiting_reason=_waiting_reason(pod),
        restart_count=_restart_count(pod),
        created_at=pod.metadata.creation_timestamp,
    )


def hpa_status(hpa: Any) -> HpaStatus:
    """Convert a V2HorizontalPodAutoscaler into the fields the console shows."""
    status = hpa.status
    current = getattr(status, "current_replicas", None)
    desired = getattr(status, "desired_replicas", None)
    maximum = getattr(hpa.spec, "max_replicas", None) if hpa.spec else None
    return HpaStatus(
        name=str(hpa.metadata.name),
        current_replicas=None if current is None else int(current),
        desired_replicas=None if desired is None else int(desired),
        metric_value=_desired_metric_value(status, current),
        last_scale_time=getattr(status, "last_scale_time", None),
        max_replicas=None if maximum is None else int(maximum),
    )


def _desired_metric_value(status: Any, current: int | None) -> float | None:
    """Return the HPA's current value of `wva_desired_replicas`, or None."""
    for metric in getattr(status, "current_metrics", None) or []:
        source = metric.external if metric.type == "External" else None
        if metric.type == "Object":
            source = metric.object
        if source is None or source.metric is None:
            continue
        if source.metric.name != DESIRED_METRIC or source.current is None:
            continue
        if source.current.value is not None:
            return float(parse_quantity(source.current.value))
        if source.current.average_value is not None and current:
            # An AverageValue target reports the value divided by the replicas.
            return float(parse_quantity(source.current.average_value)) * current
    return None


def new_api_client() -> k8s.ApiClient:
    """Build an ApiClient from WVA_KUBECONFIG, or in-cluster config when empty."""
    return _api_client()


def _api_client() -> k8s.ApiClient:
    configuration = k8s.Configuration()
    path = settings.WVA_KUBECONFIG
    try:
        if path:
            k8s_config.load_kube_config(
                config_file=path, client_configuration=configuration
            )
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
    except (k8s_config.ConfigException, OSError) as exc:
        source = path or "in-cluster configuration"
        raise PermanentActuatorError(
            f"cannot load Kubernetes configuration from {source}: {exc}",
            "no_kubeconfig",
        ) from exc
    # The actuator retries by itself; urllib3's own retries would stretch timeouts.
    configuration.retries = 0
    return k8s.ApiClient(configuration)


def get_actuator() -> Actuator:
    """Build an Actuator from WVA_KUBECONFIG, or in-cluster config when empty."""
    return Actuator(_api_client())
