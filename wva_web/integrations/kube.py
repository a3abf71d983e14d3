"""Kubernetes access of the console: every cluster call goes through here.

Workloads are Deployments, StatefulSets and LeaderWorkerSets
(`leaderworkerset.x-k8s.io/v1`, one replica per group). The actuator changes
replica counts only through the scale subresource and never patches a
workload's spec. Before a Deployment shrinks, the chosen pod gets
`controller.kubernetes.io/pod-deletion-cost`, so the ReplicaSet removes it.
A StatefulSet or LeaderWorkerSet always removes its highest ordinals, so
there the actuator reports those pods as the ones removed.

After each change the actuator writes, at best effort, the previous count
and the action into the workload's annotations (`wva.llm-d.ai/previous-replicas`,
`wva.llm-d.ai/last-action`) and a Kubernetes Event on the workload. A
failure of either write is logged and never fails the change. In dry-run
mode only a log line is written.

Errors are split in two: `TransientActuatorError` (409, 429, 5xx, timeouts,
refused connections) may succeed on a later try, `PermanentActuatorError`
(403, 404 and other 4xx) will not without a change by a person.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
# Node labels that name the GPU product, first match wins: NVIDIA GPU feature
# discovery, the AMD node labeller (current and `beta.` keys) and Intel's NFD
# rules for data-center GPUs (for example `Flex_170`, `Max_1550`).
GPU_LABELS = (
    "nvidia.com/gpu.product",
    "amd.com/gpu.product-name",
    "beta.amd.com/gpu.product-name",
    "gpu.intel.com/product",
)
# Intel's generic NFD rule labels every GPU as
# `gpu.intel.com/device-id.<PCI class>-<device id>.present=true`. Without a
# product label, "<PCI class>-<device id>" (e.g. "0380-0bd5") names the product.
INTEL_DEVICE_LABEL = re.compile(
    r"gpu\.intel\.com/device-id\.([0-9a-fA-F]{4}-[0-9a-fA-F]{4})\.present"
)
# Extended resources of the device plugins. Intel registers one per kernel
# driver: i915 (legacy) and xe.
GPU_RESOURCES = (
    "nvidia.com/gpu",
    "amd.com/gpu",
    "gpu.intel.com/i915",
    "gpu.intel.com/xe",
)
DEPLOYMENT = "Deployment"
STATEFUL_SET = "StatefulSet"
LEADER_WORKER_SET = "LeaderWorkerSet"
KINDS = (DEPLOYMENT, STATEFUL_SET, LEADER_WORKER_SET)
# Kinds whose controller removes the highest ordinal first and ignores
# pod-deletion-cost.
ORDERED_KINDS = frozenset({STATEFUL_SET, LEADER_WORKER_SET})
LWS_GROUP = "leaderworkerset.x-k8s.io"
LWS_VERSION = "v1"
LWS_PLURAL = "leaderworkersets"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
# Set by the StatefulSet controller since Kubernetes 1.28.
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
PREVIOUS_REPLICAS = "wva.llm-d.ai/previous-replicas"
LAST_ACTION = "wva.llm-d.ai/last-action"
EVENT_COMPONENT = "wva-console"
# The API server rejects an Event message longer than this.
EVENT_MESSAGE_MAX = 1024
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
    # Pod index of a StatefulSet, group index of a LeaderWorkerSet; else None.
    ordinal: int | None = None

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


@dataclass(frozen=True)
class WorkloadInfo:
    """The fields of a variant's workload that the console reads.

    `previous_replicas` and `last_action` come from the annotations the
    actuator writes on each change; None before the first one.
    """

    kind: str
    name: str
    namespace: str
    uid: str
    replicas: int
    match_labels: dict[str, str]
    grace_period_s: int | None
    annotations: dict[str, str]

    @property
    def previous_replicas(self) -> int | None:
        value = self.annotations.get(PREVIOUS_REPLICAS, "")
        return int(value) if value.isdigit() else None

    @property
    def last_action(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.annotations.get(LAST_ACTION, ""))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass
class ScaleResult:
    """Outcome of `set_replicas`: counts, dry-run flag and the writes made.

    `victims` are the pods the reduction removes, first out first: the
    marked pod of a Deployment, the highest ordinals of the other kinds.
    """

    replicas: int
    previous: int
    dry_run: bool
    calls: list[str] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChangeNote:
    """Action id and approver of a change, for its Event and annotations."""

    action_id: int | None = None
    approved_by: str = ""
    override: bool = False

    @property
    def action(self) -> str:
        return "-" if self.action_id is None else str(self.action_id)


def ordinal_victims(pods: Sequence[PodInfo], count: int) -> list[str]:
    """Return the live pods with the `count` highest ordinals, highest first.

    This is the order in which a StatefulSet or a LeaderWorkerSet removes
    its pods or groups. Pods without a known ordinal are left out.
    """
    numbered = [p for p in pods if p.ordinal is not None and not p.terminating]
    numbered.sort(key=lambda pod: pod.ordinal or 0, reverse=True)
    return [pod.name for pod in numbered[: max(0, count)]]


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
    # With retries off, urllib3 wraps a read or connect time-out in MaxRetryError.
    # A refused connection (NewConnectionError) subclasses ConnectTimeoutError.
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    refused = isinstance(cause, urllib3.exceptions.NewConnectionError)
    if isinstance(cause, urllib3.exceptions.TimeoutError) and not refused:
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
        custom: Any = None,
        dry_run: bool | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.apps = apps or k8s.AppsV1Api(api_client)
        self.core = core or k8s.CoreV1Api(api_client)
        self.autoscaling = autoscaling or k8s.AutoscalingV2Api(api_client)
        self.custom = custom or k8s.CustomObjectsApi(api_client)
        self.dry_run = settings.WVA_DRY_RUN if dry_run is None else dry_run
        self.timeout_s = float(timeout_s or settings.WVA_KUBE_TIMEOUT_S)

    def _call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, _request_timeout=self.timeout_s, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise classify(exc, what) from exc

    # Reads.

    def read_workload(self, variant: Workload) -> WorkloadInfo:
        """Read the variant's Deployment, StatefulSet or LeaderWorkerSet."""
        what = f"read {variant.kind} {variant.namespace}/{variant.workload_name}"
        name, namespace = variant.workload_name, variant.namespace
        if variant.kind == LEADER_WORKER_SET:
            raw = self._call(
                what,
                self.custom.get_namespaced_custom_object,
                LWS_GROUP,
                LWS_VERSION,
                namespace,
                LWS_PLURAL,
                name,
            )
            return lws_info(raw)
        if variant.kind == STATEFUL_SET:
            reader = self.apps.read_namespaced_stateful_set
        elif variant.kind == DEPLOYMENT:
            reader = self.apps.read_namespaced_deployment
        else:
            raise unsupported_kind(variant.kind)
        return apps_info(variant.kind, self._call(what, reader, name, namespace))

    def read_grace_period(self, variant: Workload) -> int:
        """Return `terminationGracePeriodSeconds` of the workload's pod template."""
        seconds = self.read_workload(variant).grace_period_s
        return DEFAULT_GRACE_PERIOD_S if seconds is None else int(seconds)

    def read_replicas(self, variant: Workload) -> int:
        """Return `spec.replicas` of the variant's scale subresource."""
        what = f"read scale of {variant.namespace}/{variant.workload_name}"
        name, namespace = variant.workload_name, variant.namespace
        if variant.kind == LEADER_WORKER_SET:
            raw = self._call(
                what,
                self.custom.get_namespaced_custom_object_scale,
                LWS_GROUP,
                LWS_VERSION,
                namespace,
                LWS_PLURAL,
                name,
            )
            return int((raw.get("spec") or {}).get("replicas") or 0)
        if variant.kind == STATEFUL_SET:
            reader = self.apps.read_namespaced_stateful_set_scale
        elif variant.kind == DEPLOYMENT:
            reader = self.apps.read_namespaced_deployment_scale
        else:
            raise unsupported_kind(variant.kind)
        scale = self._call(what, reader, name, namespace)
        return int(scale.spec.replicas or 0)

    def list_pods(self, variant: Workload) -> list[PodInfo]:
        """List the variant's replicas by the workload's pod selector.

        A LeaderWorkerSet replica is a group, listed as its leader pod
        (worker index 0), which serves the group's metrics.
        """
        workload = self.read_workload(variant)
        labels = workload.match_labels
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
        infos = (
            pod_info(pod, variant.kind, variant.workload_name) for pod in pods.items
        )
        return sorted(infos, key=lambda p: p.name)

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
            product = gpu_product(node.metadata.labels or {})
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
        note: ChangeNote | None = None,
    ) -> ScaleResult:
        """Set the replica count through the scale subresource.

        Before a Deployment shrinks, leftover deletion-cost annotations on
        the other pods are removed and `victim_pod` gets the lowest cost, so
        Kubernetes deletes that pod. A StatefulSet or LeaderWorkerSet removes
        its highest ordinals and ignores `victim_pod`, so the result names
        those. A 409 on the scale patch is retried once after a fresh read.
        After the change, the annotations and an Event record it.
        """
        note = note or ChangeNote()
        dry = dry_run or self.dry_run
        previous = self.read_replicas(variant)
        result = ScaleResult(replicas=replicas, previous=previous, dry_run=dry)
        if replicas < previous:
            result.victims = self._victims(variant, previous, replicas, victim_pod)
            if variant.kind not in ORDERED_KINDS and victim_pod:
                self._mark_victim(variant, victim_pod, dry, result.calls)
        if dry:
            logger.info(
                "dry run: would scale %s %s/%s from %s to %s replicas (victims %s, "
                "action %s, approved by %s)",
                variant.kind,
                variant.namespace,
                variant.workload_name,
                previous,
                replicas,
                ",".join(result.victims) or "-",
                note.action,
                note.approved_by or "-",
            )
            return result
        # NOTE: the patch carries no resourceVersion. A count that another
        # writer changes between the caller's base check and this patch, one
        # API round trip, is overwritten.
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
        self._record_change(variant, result, note)
        return result

    def _victims(
        self, variant: Workload, previous: int, replicas: int, victim_pod: str
    ) -> list[str]:
        if variant.kind not in ORDERED_KINDS:
            return [victim_pod] if victim_pod else []
        victims = ordinal_victims(self.list_pods(variant), previous - replicas)
        if victim_pod and victim_pod not in victims:
            logger.warning(
                "victim %s of %s %s/%s is not removed: the controller removes the "
                "highest ordinals first (%s)",
                victim_pod,
                variant.kind,
                variant.namespace,
                variant.workload_name,
                ",".join(victims) or "-",
            )
        return victims

    def _patch_scale(self, variant: Workload, replicas: int) -> None:
        body = {"spec": {"replicas": int(replicas)}}
        what = f"patch scale of {variant.namespace}/{variant.workload_name}"
        name, namespace = variant.workload_name, variant.namespace
        if variant.kind == LEADER_WORKER_SET:
            self._call(
                what,
                self.custom.patch_namespaced_custom_object_scale,
                LWS_GROUP,
                LWS_VERSION,
                namespace,
                LWS_PLURAL,
                name,
                body,
            )
            return
        if variant.kind == STATEFUL_SET:
            patch = self.apps.patch_namespaced_stateful_set_scale
        elif variant.kind == DEPLOYMENT:
            patch = self.apps.patch_namespaced_deployment_scale
        else:
            raise unsupported_kind(variant.kind)
        self._call(what, patch, name, namespace, body)

    def _record_change(
        self, variant: Workload, result: ScaleResult, note: ChangeNote
    ) -> None:
        """Write the annotations and the Event of a change; log an ActuatorError."""
        uid = ""
        try:
            uid = self._annotate_workload(variant, result, note)
            result.calls.append("annotate")
        except ActuatorError as exc:
            logger.warning(
                "recording the previous replica count on %s %s/%s failed: %s",
                variant.kind,
                variant.namespace,
                variant.workload_name,
                exc,
            )
        try:
            self._create_event(variant, result, note, uid)
            result.calls.append("event")
        except ActuatorError as exc:
            logger.warning(
                "creating the Event for %s %s/%s failed: %s",
                variant.kind,
                variant.namespace,
                variant.workload_name,
                exc,
            )

    def _annotate_workload(
        self, variant: Workload, result: ScaleResult, note: ChangeNote
    ) -> str:
        """Merge-patch the change into the workload's annotations; return its uid."""
        action = {
            "action": note.action_id,
            "from": result.previous,
            "to": result.replicas,
            "approvedBy": note.approved_by,
            "override": note.override,
            "at": _now_stamp(),
        }
        annotations = {
            PREVIOUS_REPLICAS: str(result.previous),
            LAST_ACTION: json.dumps(action, separators=(",", ":")),
        }
        body = {"metadata": {"annotations": annotations}}
        what = f"annotate {variant.kind} {variant.namespace}/{variant.workload_name}"
        name, namespace = variant.workload_name, variant.namespace
        if variant.kind == LEADER_WORKER_SET:
            raw = self._call(
                what,
                self.custom.patch_namespaced_custom_object,
                LWS_GROUP,
                LWS_VERSION,
                namespace,
                LWS_PLURAL,
                name,
                body,
            )
            return str((raw.get("metadata") or {}).get("uid") or "")
        if variant.kind == STATEFUL_SET:
            patch = self.apps.patch_namespaced_stateful_set
        else:
            patch = self.apps.patch_namespaced_deployment
        patched = self._call(what, patch, name, namespace, body)
        return str(getattr(patched.metadata, "uid", "") or "")

    def _create_event(
        self, variant: Workload, result: ScaleResult, note: ChangeNote, uid: str
    ) -> None:
        body = change_event(variant, result, note, uid)
        self._call(
            f"create Event in {variant.namespace}",
            self.core.create_namespaced_event,
            variant.namespace,
            body,
        )

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


def unsupported_kind(kind: str) -> PermanentActuatorError:
    return PermanentActuatorError(
        f"workload kind {kind!r} is not supported; use one of {', '.join(KINDS)}",
        "unsupported_kind",
    )


def _now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_reason(result: ScaleResult, note: ChangeNote) -> str:
    """Return the Event reason: WVAOverride, WVAScaledUp or WVAScaledDown."""
    if note.override:
        return "WVAOverride"
    return "WVAScaledUp" if result.replicas > result.previous else "WVAScaledDown"


def change_event(
    variant: Workload, result: ScaleResult, note: ChangeNote, uid: str
) -> dict[str, Any]:
    """Build the core/v1 Event that records one change of a workload."""
    api_version = f"{LWS_GROUP}/{LWS_VERSION}"
    if variant.kind != LEADER_WORKER_SET:
        api_version = "apps/v1"
    message = (
        f"scaled from {result.previous} to {result.replicas} replicas by scale "
        f"action {note.action}, approved by {note.approved_by or '-'}"
    )
    if result.victims:
        message += f"; removing {', '.join(result.victims)}"
    now = _now_stamp()
    involved = {
        "apiVersion": api_version,
        "kind": variant.kind,
        "name": variant.workload_name,
        "namespace": variant.namespace,
    }
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{variant.workload_name}.",
            "namespace": variant.namespace,
        },
        "involvedObject": involved,
        "reason": event_reason(result, note),
        "message": message[:EVENT_MESSAGE_MAX],
        "type": "Normal",
        "action": "Scale",
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_COMPONENT,
        "reportingInstance": str(getattr(settings, "WVA_INSTANCE", "")),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def apps_info(kind: str, workload: Any) -> WorkloadInfo:
    """Convert a V1Deployment or V1StatefulSet into the fields the console reads."""
    metadata = workload.metadata
    spec = workload.spec
    selector = getattr(spec, "selector", None)
    template = getattr(spec, "template", None)
    pod_spec = getattr(template, "spec", None)
    grace = getattr(pod_spec, "termination_grace_period_seconds", None)
    return WorkloadInfo(
        kind=kind,
        name=str(metadata.name),
        namespace=str(metadata.namespace or ""),
        uid=str(getattr(metadata, "uid", "") or ""),
        replicas=int(spec.replicas or 0),
        match_labels=dict(getattr(selector, "match_labels", None) or {}),
        grace_period_s=None if grace is None else int(grace),
        annotations=dict(getattr(metadata, "annotations", None) or {}),
    )


def lws_info(raw: dict[str, Any]) -> WorkloadInfo:
    """Convert a LeaderWorkerSet object (plain JSON) into the fields the console reads.

    Its replicas are groups. The pods of a group carry the set's name label,
    and the leader has worker index 0, as in the LeaderWorkerSet's
    `status.hpaPodSelector`.
    """
    metadata = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    name = str(metadata.get("name") or "")
    template = spec.get("leaderWorkerTemplate") or {}
    leader = template.get("leaderTemplate") or template.get("workerTemplate") or {}
    grace = (leader.get("spec") or {}).get("terminationGracePeriodSeconds")
    return WorkloadInfo(
        kind=LEADER_WORKER_SET,
        name=name,
        namespace=str(metadata.get("namespace") or ""),
        uid=str(metadata.get("uid") or ""),
        replicas=int(spec.get("replicas") or 0),
        match_labels={LWS_NAME_LABEL: name, LWS_WORKER_INDEX_LABEL: "0"},
        grace_period_s=None if grace is None else int(grace),
        annotations={
            str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()
        },
    )


def gpu_product(labels: dict[str, str]) -> str:
    """Return the GPU product of a node from its labels; "" for no GPU label."""
    product = next((labels[key] for key in GPU_LABELS if labels.get(key)), "")
    if product:
        return product
    devices = sorted(
        match.group(1).lower()
        for key, value in labels.items()
        if value == "true" and (match := INTEL_DEVICE_LABEL.fullmatch(key))
    )
    # NOTE: a node with several Intel device ids is counted under the first.
    return devices[0] if devices else ""


def pod_ordinal(pod: Any, kind: str, workload_name: str) -> int | None:
    """Return the pod index of a StatefulSet or the group index of a LeaderWorkerSet.

    Read from the controller's label, else from the `<name>-<ordinal>` pod
    name. None for a Deployment or when neither gives a number.
    """
    if kind not in ORDERED_KINDS:
        return None
    labels = pod.metadata.labels or {}
    key = LWS_GROUP_INDEX_LABEL if kind == LEADER_WORKER_SET else POD_INDEX_LABEL
    value = str(labels.get(key, ""))
    if value.isdigit():
        return int(value)
    suffix = str(pod.metadata.name).removeprefix(f"{workload_name}-")
    return int(suffix) if suffix.isdigit() else None


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


def pod_info(pod: Any, kind: str = DEPLOYMENT, workload_name: str = "") -> PodInfo:
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
        ordinal=pod_ordinal(pod, kind, workload_name),
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
