"""Emulated GPU cluster: the fleet model behind a small Kubernetes API.

The server is the standard library's `ThreadingHTTPServer`: it serves a
handful of JSON routes and one text route per pod, so a web framework would
add a dependency and nothing else. It listens on loopback only.

Demo defaults (`make run`): compression 6.0 and a start-up delay of 30 s.
The saturation rule used to pick them: scale up when the mean spare KV
(0.80 - kv) over non-saturated replicas is below 0.10, or when the mean
spare queue (5 - waiting) is below 3. The demo fleet starts at one replica
per variant (H100-80GB, A100-80GB, L40S, L4), and one-minute peaks are
checked every 30 s. The rule then first fires at 60 s of simulated time
when replicas are sampled every 15 or 30 s, and at 30 s with 1 s samples. These numbers
come from replaying the fleet in-process, not from a real cluster. The
trace's rate rises over its first four trace minutes (191 to 353 requests
per minute), so the offered load grows from about 19 to 35 requests/s
during the first 40 s.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fleetsim import kube
from fleetsim.engine import Cluster, load_accelerators, load_fleet
from fleetsim.leases import LeaseStore
from fleetsim.metrics import render
from fleetsim.trace import TraceRequest, load_trace, replay

logger = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FLEET = PACKAGE_ROOT / "data" / "demo_fleet.json"
DEFAULT_ACCELERATORS = PACKAGE_ROOT / "data" / "accelerators.csv"
DEFAULT_TRACE = PACKAGE_ROOT / "data" / "traces" / "AzureLLMInferenceTrace_conv.csv"
DEFAULT_COMPRESSION = 6.0
DEFAULT_STARTUP_DELAY_S = 30.0
# The real clock advances the model this often, in wall seconds.
TICK_S = 0.1
# A single manual advance is limited to one simulated day.
MAX_ADVANCE_S = 86400.0
MAX_BODY_BYTES = 1 << 20


class EmulatorError(RuntimeError):
    """A setting of the emulator that cannot work."""


@functools.lru_cache(maxsize=4)
def _cached_trace(path: Path) -> list[TraceRequest]:
    return load_trace(path)


def require_loopback(host: str) -> str:
    """Return the loopback address to bind, or raise EmulatorError."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise EmulatorError(
            f"invalid --host {host!r}: use a loopback address such as 127.0.0.1 or ::1"
        ) from None
    if not address.is_loopback:
        raise EmulatorError(
            f"--host {host} is not a loopback address; the emulator serves "
            "127.0.0.1 or ::1 only"
        )
    return host


@dataclass
class Fault:
    """Failure injected into the next `remaining` Kubernetes API calls."""

    remaining: int
    status: int | None = None
    delay_s: float = 0.0


class HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


Route = tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]


class Emulator:
    """Fleet model, HTTP server and clock of one emulated cluster."""

    def __init__(
        self,
        fleet_path: Path | str = DEFAULT_FLEET,
        state_dir: Path | str = "var/emulator",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: str = "manual",
        compression: float = DEFAULT_COMPRESSION,
        startup_delay_s: float = DEFAULT_STARTUP_DELAY_S,
        seed: int = 1,
        trace: bool | Path | str = True,
        accelerators_path: Path | str = DEFAULT_ACCELERATORS,
    ) -> None:
        if clock not in ("real", "manual"):
            raise EmulatorError(f"clock must be 'real' or 'manual', got {clock!r}")
        if not (math.isfinite(compression) and compression > 0):
            raise EmulatorError(
                f"compression must be a positive number, got {compression}"
            )
        self.host = require_loopback(host)
        self.port = port
        self.clock_mode = clock
        self.compression = compression
        self.state_dir = Path(state_dir)
        arrivals = None
        if trace:
            trace_path = DEFAULT_TRACE if trace is True else Path(trace)
            arrivals = replay(_cached_trace(trace_path), compression)
        self.cluster = Cluster(
            load_fleet(Path(fleet_path)),
            load_accelerators(Path(accelerators_path)),
            startup_delay_s=startup_delay_s,
            seed=seed,
            arrivals=arrivals,
        )
        self.lock = threading.RLock()
        self.clock = kube.Clock(kube.now_epoch())
        self.fault: Fault | None = None
        self.events: list[dict[str, Any]] = []
        self.leases = LeaseStore(self.cluster, self.clock)
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._routes = self._build_routes()

    # -- life cycle -------------------------------------------------------

    def start(self) -> Emulator:
        server_class = _IPv6Server if ":" in self.host else _IPv4Server
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = server_class((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._write_state_files()
        serve = threading.Thread(
            target=self._server.serve_forever, args=(0.2,), daemon=True
        )
        serve.start()
        self._threads.append(serve)
        if self.clock_mode == "real":
            ticker = threading.Thread(target=self._run_real_clock, daemon=True)
            ticker.start()
            self._threads.append(ticker)
        logger.info(
            "fleetsim emulator listening on %s, clock %s, compression %s, "
            "start-up delay %s s",
            self.base_url,
            self.clock_mode,
            self.compression,
            self.cluster.startup_delay_s,
        )
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads.clear()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run_real_clock(self) -> None:
        started = time.monotonic()
        while not self._stopping.wait(TICK_S):
            with self.lock:
                self.cluster.advance_to(time.monotonic() - started)

    def _write_state_files(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path.write_text(self._kubeconfig_text())
        state = {"port": self.port, "pid": os.getpid(), "base_url": self.base_url}
        (self.state_dir / "emulator.json").write_text(
            json.dumps(state, indent=2) + "\n"
        )

    def _kubeconfig_text(self) -> str:
        return (
            "apiVersion: v1\n"
            "kind: Config\n"
            "clusters:\n"
            "- name: fleetsim\n"
            "  cluster:\n"
            f"    server: {self.base_url}\n"
            "contexts:\n"
            "- name: fleetsim\n"
            "  context:\n"
            "    cluster: fleetsim\n"
            "    user: fleetsim\n"
            f"    namespace: {self.cluster.fleet.namespace}\n"
            "current-context: fleetsim\n"
            "users:\n"
            "- name: fleetsim\n"
            "  user: {}\n"
        )

    # -- in-process API ---------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    def advance(self, seconds: float) -> None:
        """Advance simulated time; manual clock only."""
        if self.clock_mode != "manual":
            raise EmulatorError("advance() needs clock='manual'")
        if not (math.isfinite(seconds) and 0 <= seconds <= MAX_ADVANCE_S):
            raise EmulatorError(
                f"seconds must be in [0, {MAX_ADVANCE_S}], got {seconds}"
            )
        with self.lock:
            self.cluster.advance(seconds)

    def status(self) -> dict[str, Any]:
        with self.lock:
            status = self.cluster.status()
        status.update(
            clock=self.clock_mode,
            compression=self.compression,
            startup_delay_s=self.cluster.startup_delay_s,
            faults_pending=self.fault.remaining if self.fault else 0,
            events_received=len(self.events),
        )
        return status

    def crash_loop(self, pod_name: str, restarts: int = 3) -> None:
        """Put a pod in CrashLoopBackOff with `restarts` restarts; it stays there."""
        with self.lock:
            pod = self.cluster.find_pod(pod_name)
            if pod is None:
                raise EmulatorError(f"pod {pod_name!r} not found")
            self.cluster.crash_loop(pod, restarts)

    def pod_names(self, variant: str) -> list[str]:
        """Return the pod names of a Deployment, oldest first, terminating included."""
        with self.lock:
            return [pod.name for pod in self.cluster.pods(variant)]

    # -- routes -----------------------------------------------------------

    def _build_routes(self) -> list[Route]:
        ns = r"(?P<ns>[a-z0-9-]+)"
        name = r"(?P<name>[a-zA-Z0-9.-]+)"
        apps = r"(?P<resource>deployments|statefulsets)"
        workloads = rf"/apis/apps/v1/namespaces/{ns}/{apps}"
        lws = r"(?P<resource>leaderworkersets)"
        leader_worker_sets = rf"/apis/{kube.LWS_API_VERSION}/namespaces/{ns}/{lws}"
        pods = rf"/api/v1/namespaces/{ns}/pods"
        leases = rf"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
        table: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", r"/api", self._get_api),
            ("GET", r"/apis", self._get_apis),
            ("GET", r"/version", self._get_version),
            *self._workload_routes(workloads, name),
            *self._workload_routes(leader_worker_sets, name),
            ("GET", pods, self._list_pods),
            ("GET", r"/api/v1/pods", self._list_all_pods),
            ("GET", rf"{pods}/{name}", self._get_pod),
            ("PATCH", rf"{pods}/{name}", self._patch_pod),
            ("GET", r"/api/v1/nodes", self._list_nodes),
            (
                "GET",
                rf"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
                self._list_hpas,
            ),
            ("POST", rf"/api/v1/namespaces/{ns}/events", self._post_event),
            ("GET", leases, self.leases.list_leases),
            ("POST", leases, self.leases.create_lease),
            ("GET", rf"{leases}/{name}", self.leases.get_lease),
            ("PUT", rf"{leases}/{name}", self.leases.replace_lease),
            ("PATCH", rf"{leases}/{name}", self.leases.patch_lease),
            ("GET", rf"/api/v1/namespaces/{ns}/events", self._list_events),
            ("GET", rf"/pods/{name}/metrics", self._get_metrics),
            ("GET", r"/emulator/status", self._get_status),
            ("GET", r"/emulator/prometheus-targets", self._get_prometheus_targets),
            ("POST", r"/emulator/advance", self._post_advance),
            ("POST", r"/emulator/faults", self._post_faults),
            ("POST", r"/emulator/crash", self._post_crash),
        ]
        return [
            (method, re.compile(pattern + r"/?"), fn) for method, pattern, fn in table
        ]

    def _workload_routes(
        self, collection: str, name: str
    ) -> list[tuple[str, str, Callable[..., tuple[int, Any]]]]:
        """Routes of one workload resource: list, get, annotate and scale."""
        return [
            ("GET", collection, self._list_workloads),
            ("GET", rf"{collection}/{name}", self._get_workload),
            ("PATCH", rf"{collection}/{name}", self._patch_workload),
            ("GET", rf"{collection}/{name}/scale", self._get_scale),
            ("PATCH", rf"{collection}/{name}/scale", self._patch_scale),
            ("PUT", rf"{collection}/{name}/scale", self._put_scale),
        ]

    def dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        content_type: str,
    ) -> tuple[int, Any]:
        """Return (status, JSON object or bytes) for one request."""
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != method:
                continue
            if path.startswith("/api"):
                self._apply_fault()
            with self.lock:
                return handler(
                    query=query,
                    body=body,
                    content_type=content_type,
                    **match.groupdict(),
                )
        if any(pattern.fullmatch(path) for _, pattern, _ in self._routes):
            raise HttpError(
                405, "MethodNotAllowed", f"{method} is not allowed on {path}"
            )
        raise HttpError(
            404, "NotFound", f"the server could not find the requested resource {path}"
        )

    def _apply_fault(self) -> None:
        with self.lock:
            fault = self.fault
            if fault is None:
                return
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.fault = None
        if fault.delay_s > 0:
            time.sleep(fault.delay_s)
        if fault.status is not None:
            reasons = {403: "Forbidden", 404: "NotFound", 409: "Conflict"}
            reason = reasons.get(fault.status, "InternalError")
            raise HttpError(
                fault.status, reason, f"injected fault: HTTP {fault.status}"
            )

    def _check_namespace(self, ns: str) -> None:
        if ns != self.cluster.fleet.namespace:
            raise HttpError(404, "NotFound", f'namespaces "{ns}" not found')

    def _workload(self, ns: str, resource: str, name: str) -> Any:
        """Return the variant's workload named `name` if it is of `resource`."""
        self._check_namespace(ns)
        deployment = self.cluster.deployments.get(name)
        if deployment is None or kube.RESOURCES[deployment.kind] != resource:
            group = (
                "leaderworkerset.x-k8s.io" if resource == "leaderworkersets" else "apps"
            )
            raise HttpError(404, "NotFound", f'{resource}.{group} "{name}" not found')
        return deployment

    def _pod(self, ns: str, name: str) -> Any:
        self._check_namespace(ns)
        pod = self.cluster.find_pod(name)
        if pod is None:
            raise HttpError(404, "NotFound", f'pods "{name}" not found')
        return pod

    def _get_api(self, **_: Any) -> tuple[int, Any]:
        return 200, {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [],
        }

    def _get_apis(self, **_: Any) -> tuple[int, Any]:
        groups = [
            ("apps", "v1"),
            ("autoscaling", "v2"),
            ("coordination.k8s.io", "v1"),
            ("leaderworkerset.x-k8s.io", "v1"),
        ]
        items = [
            {
                "name": group,
                "versions": [
                    {"groupVersion": f"{group}/{version}", "version": version}
                ],
                "preferredVersion": {
                    "groupVersion": f"{group}/{version}",
                    "version": version,
                },
            }
            for group, version in groups
        ]
        return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": items}

    def _get_version(self, **_: Any) -> tuple[int, Any]:
        return 200, {
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-fleetsim",
            "platform": "linux/amd64",
        }

    def _list_workloads(self, ns: str, resource: str, **_: Any) -> tuple[int, Any]:
        self._check_namespace(ns)
        kinds = {value: key for key, value in kube.RESOURCES.items()}
        items = [
            kube.workload_json(self.cluster, d, self.clock)
            for d in self.cluster.deployments.values()
            if d.kind == kinds[resource]
        ]
        api_version = (
            kube.LWS_API_VERSION if resource == "leaderworkersets" else "apps/v1"
        )
        return 200, kube.list_json(
            f"{kinds[resource]}List", api_version, items, self.cluster.revision
        )

    def _get_workload(
        self, ns: str, resource: str, name: str, **_: Any
    ) -> tuple[int, Any]:
        workload = self._workload(ns, resource, name)
        return 200, kube.workload_json(self.cluster, workload, self.clock)

    def _patch_workload(
        self, ns: str, resource: str, name: str, body: Any, content_type: str, **_: Any
    ) -> tuple[int, Any]:
        """Merge annotations into a workload; the emulator serves no other change."""
        workload = self._workload(ns, resource, name)
        if content_type == "application/json-patch+json":
            changes = _annotations_from_json_patch(body)
        else:
            changes = _annotations_from_object(body, workload.resource_version)
        for key, value in changes.items():
            if value is None:
                workload.annotations.pop(key, None)
            else:
                workload.annotations[key] = value
        workload.resource_version = self.cluster.next_revision()
        return 200, kube.workload_json(self.cluster, workload, self.clock)

    def _get_scale(
        self, ns: str, resource: str, name: str, **_: Any
    ) -> tuple[int, Any]:
        workload = self._workload(ns, resource, name)
        return 200, kube.scale_json(self.cluster, workload, self.clock)

    def _patch_scale(
        self,
        ns: str,
        resource: str,
        name: str,
        body: Any,
        content_type: str,
        **_: Any,
    ) -> tuple[int, Any]:
        deployment = self._workload(ns, resource, name)
        if content_type == "application/json-patch+json":
            replicas = _replicas_from_json_patch(body, deployment.replicas)
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            replicas = _replicas_from_object(
                body, deployment.resource_version, deployment.replicas
            )
        else:
            raise HttpError(
                415,
                "UnsupportedMediaType",
                f"unsupported patch content type {content_type!r}",
            )
        return self._set_replicas(deployment, replicas)

    def _put_scale(
        self, ns: str, resource: str, name: str, body: Any, **_: Any
    ) -> tuple[int, Any]:
        deployment = self._workload(ns, resource, name)
        replicas = _replicas_from_object(body, deployment.resource_version, None)
        return self._set_replicas(deployment, replicas)

    def _set_replicas(self, deployment: Any, replicas: int) -> tuple[int, Any]:
        before = deployment.replicas
        self.cluster.scale(deployment.name, replicas)
        logger.info(
            "scale %s %s: %d -> %d replicas",
            deployment.kind,
            deployment.name,
            before,
            replicas,
        )
        return 200, kube.scale_json(self.cluster, deployment, self.clock)

    def _list_pods(
        self, ns: str, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        self._check_namespace(ns)
        return self._pod_list(query)

    def _list_all_pods(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        """List pods in all namespaces; the emulated cluster has only one."""
        return self._pod_list(query)

    def _pod_list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        selector = query.get("labelSelector", [""])[0]
        field_selector = query.get("fieldSelector", [""])[0]
        items = []
        try:
            for deployment in self.cluster.deployments.values():
                for pod in deployment.pods:
                    items.extend(self._matching_pods(pod, selector, field_selector))
        except ValueError as exc:
            raise HttpError(400, "BadRequest", str(exc)) from None
        return 200, kube.list_json("PodList", "v1", items, self.cluster.revision)

    def _matching_pods(
        self, pod: Any, selector: str, field_selector: str
    ) -> list[dict[str, Any]]:
        """Return the pod, and a LeaderWorkerSet leader's workers, that match."""
        node = pod.node.name if pod.node is not None else ""
        if not kube.match_node_field(node, field_selector):
            return []
        pods = [kube.pod_json(self.cluster, pod, self.clock, self.port)]
        if self.cluster.deployments[pod.deployment].kind == "LeaderWorkerSet":
            pods.extend(kube.worker_pods_json(self.cluster, pod, self.clock, self.port))
        return [
            item
            for item in pods
            if kube.match_selector(item["metadata"]["labels"], selector)
        ]

    def _get_pod(self, ns: str, name: str, **_: Any) -> tuple[int, Any]:
        return 200, kube.pod_json(
            self.cluster, self._pod(ns, name), self.clock, self.port
        )

    def _patch_pod(
        self, ns: str, name: str, body: Any, content_type: str, **_: Any
    ) -> tuple[int, Any]:
        pod = self._pod(ns, name)
        if content_type == "application/json-patch+json":
            changes = _annotations_from_json_patch(body)
        else:
            metadata = body.get("metadata", {}) if isinstance(body, dict) else None
            if not isinstance(metadata, dict):
                raise HttpError(
                    400, "BadRequest", "patch body must be an object with 'metadata'"
                )
            changes = metadata.get("annotations") or {}
            if not isinstance(changes, dict):
                raise HttpError(
                    400, "BadRequest", "metadata.annotations must be an object"
                )
        for key, value in changes.items():
            if value is not None and not isinstance(value, str):
                raise HttpError(
                    400, "BadRequest", f"annotation {key!r} must be a string or null"
                )
        self.cluster.set_annotations(pod, changes)
        return 200, kube.pod_json(self.cluster, pod, self.clock, self.port)

    def _list_nodes(self, **_: Any) -> tuple[int, Any]:
        items = [kube.node_json(node, self.clock) for node in self.cluster.nodes]
        return 200, kube.list_json("NodeList", "v1", items, self.cluster.revision)

    def _list_hpas(self, ns: str, **_: Any) -> tuple[int, Any]:
        self._check_namespace(ns)
        return 200, kube.list_json(
            "HorizontalPodAutoscalerList", "autoscaling/v2", [], self.cluster.revision
        )

    def _post_event(self, ns: str, body: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise HttpError(400, "BadRequest", "event body must be a JSON object")
        event = dict(body)
        raw_metadata = event.get("metadata") or {}
        if not isinstance(raw_metadata, dict):
            raise HttpError(
                422, "Invalid", f"metadata must be an object, got {raw_metadata!r}"
            )
        metadata = dict(raw_metadata)
        prefix = metadata.get("generateName") or "fleetsim-event-"
        metadata.setdefault("name", f"{prefix}{len(self.events) + 1}")
        metadata.update(
            namespace=ns,
            uid=self.cluster.new_uid(),
            resourceVersion=str(self.cluster.next_revision()),
        )
        event.update(apiVersion="v1", kind="Event", metadata=metadata)
        event.setdefault("involvedObject", {})
        self.events.append(event)
        return 201, event

    def _list_events(self, ns: str, **_: Any) -> tuple[int, Any]:
        items = [e for e in self.events if e["metadata"]["namespace"] == ns]
        return 200, kube.list_json("EventList", "v1", items, self.cluster.revision)

    def _get_metrics(self, name: str, **_: Any) -> tuple[int, Any]:
        pod = self.cluster.find_pod(name)
        if pod is None:
            raise HttpError(404, "NotFound", f'pods "{name}" not found')
        if pod.deleted_at is None and not pod.is_ready(self.cluster.now):
            raise HttpError(503, "ServiceUnavailable", f"pod {name} is not ready")
        return 200, render(pod.engine, self.cluster.fleet.model)

    def _get_status(self, **_: Any) -> tuple[int, Any]:
        return 200, self.status()

    def _get_prometheus_targets(self, **_: Any) -> tuple[int, Any]:
        """List the running pods in Prometheus's HTTP service discovery format.

        Each pod is one target group with the labels that Kubernetes pod
        discovery and the usual relabelling give: `namespace` and `pod`. A
        terminating pod is left out, so Prometheus marks its series stale.
        """
        now = self.cluster.now
        delay_s = self.cluster.startup_delay_s
        host = f"[{self.host}]" if ":" in self.host else self.host
        groups = []
        for deployment in self.cluster.deployments.values():
            for pod in deployment.live_pods():
                if pod.phase(now, delay_s) != "Running":
                    continue
                labels = {
                    "__metrics_path__": f"/pods/{pod.name}/metrics",
                    "namespace": self.cluster.fleet.namespace,
                    "pod": pod.name,
                }
                groups.append({"targets": [f"{host}:{self.port}"], "labels": labels})
        return 200, groups

    def _post_advance(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        if self.clock_mode != "manual":
            raise HttpError(
                409, "Conflict", "advance needs the manual clock (--clock manual)"
            )
        raw = query.get("seconds", [""])[0]
        try:
            seconds = float(raw)
        except ValueError:
            raise HttpError(
                400, "BadRequest", f"seconds must be a number, got {raw!r}"
            ) from None
        try:
            self.advance(seconds)
        except EmulatorError as exc:
            raise HttpError(400, "BadRequest", str(exc)) from None
        return 200, self.status()

    def _post_faults(self, body: Any, **_: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise HttpError(
                400,
                "BadRequest",
                'expected {"count": N, "status": 500} or {"count": N, "delay_s": S}',
            )
        count = body.get("count", 1)
        status = body.get("status")
        delay = body.get("delay_s", 0.0)
        valid = (
            isinstance(count, int)
            and 0 <= count <= 1000
            and (status is None or status in (403, 404, 409, 429, 500, 503))
            and isinstance(delay, int | float)
            and 0 <= delay <= 30
        )
        if not valid:
            raise HttpError(
                400,
                "BadRequest",
                "invalid fault: count 0..1000, status one of 403, 404, 409, 429, "
                "500, 503, delay_s 0..30",
            )
        self.fault = Fault(count, status, float(delay)) if count else None
        logger.info(
            "fault injected: next %d API calls, status %s, delay %s s",
            count,
            status,
            delay,
        )
        return 200, {"count": count, "status": status, "delay_s": delay}

    def _post_crash(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        name = query.get("pod", [""])[0]
        raw = query.get("restarts", ["3"])[0]
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise HttpError(
                400, "BadRequest", f"restarts must be an integer 1..1000, got {raw!r}"
            )
        try:
            self.crash_loop(name, int(raw))
        except EmulatorError as exc:
            raise HttpError(404, "NotFound", str(exc)) from None
        logger.info("pod %s put in CrashLoopBackOff (%s restarts)", name, raw)
        return 200, {"pod": name, "restartCount": int(raw)}


def _replicas_from_object(body: Any, resource_version: int, default: int | None) -> int:
    if not isinstance(body, dict):
        raise HttpError(400, "BadRequest", "patch body must be a JSON object")
    expected = (body.get("metadata") or {}).get("resourceVersion")
    if expected is not None and str(expected) != str(resource_version):
        raise HttpError(
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified; please apply "
            "your changes to the latest version and try again",
        )
    replicas = (body.get("spec") or {}).get("replicas", default)
    return _valid_replicas(replicas)


def _annotations_from_object(body: Any, resource_version: int) -> dict[str, str | None]:
    """Read `metadata.annotations` of a merge patch; reject any other field."""
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise HttpError(
            400, "BadRequest", "patch body must be an object with 'metadata'"
        )
    extra = sorted(set(body) - {"metadata", "apiVersion", "kind"})
    if extra:
        raise HttpError(
            422,
            "Invalid",
            f"the emulator changes only metadata.annotations of a workload: {extra}",
        )
    metadata = body["metadata"]
    expected = metadata.get("resourceVersion")
    if expected is not None and str(expected) != str(resource_version):
        raise HttpError(
            409,
            "Conflict",
            "Operation cannot be fulfilled: the object has been modified",
        )
    changes = metadata.get("annotations") or {}
    if not isinstance(changes, dict) or any(
        value is not None and not isinstance(value, str) for value in changes.values()
    ):
        raise HttpError(
            400, "BadRequest", "metadata.annotations must map names to strings or null"
        )
    return changes


def _replicas_from_json_patch(body: Any, current: int) -> int:
    if not isinstance(body, list):
        raise HttpError(400, "BadRequest", "a JSON patch must be a list of operations")
    replicas = current
    for operation in body:
        if not isinstance(operation, dict) or operation.get("path") != "/spec/replicas":
            raise HttpError(
                422, "Invalid", f"unsupported JSON patch operation {operation!r}"
            )
        op = operation.get("op")
        if op in ("replace", "add"):
            replicas = _valid_replicas(operation.get("value"))
        elif op == "test":
            if operation.get("value") != replicas:
                raise HttpError(
                    422, "Invalid", f"test failed: spec.replicas is {replicas}"
                )
        else:
            raise HttpError(422, "Invalid", f"unsupported JSON patch op {op!r}")
    return replicas


def _annotations_from_json_patch(body: Any) -> dict[str, str | None]:
    if not isinstance(body, list):
        raise HttpError(400, "BadRequest", "a JSON patch must be a list of operations")
    changes: dict[str, str | None] = {}
    prefix = "/metadata/annotations/"
    for operation in body:
        path = operation.get("path", "") if isinstance(operation, dict) else ""
        if not path.startswith(prefix):
            raise HttpError(
                422, "Invalid", f"unsupported JSON patch operation {operation!r}"
            )
        key = path[len(prefix) :].replace("~1", "/").replace("~0", "~")
        if operation.get("op") in ("add", "replace"):
            changes[key] = operation.get("value")
        elif operation.get("op") == "remove":
            changes[key] = None
        else:
            raise HttpError(
                422, "Invalid", f"unsupported JSON patch op {operation.get('op')!r}"
            )
    return changes


# The emulator creates one pod object per replica; a count beyond this would
# stall its server, and no fleet file comes near it.
MAX_REPLICAS = 10_000


def _valid_replicas(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HttpError(
            422,
            "Invalid",
            f"spec.replicas must be a non-negative integer, got {value!r}",
        )
    if value > MAX_REPLICAS:
        raise HttpError(
            422,
            "Invalid",
            f"spec.replicas {value} exceeds the emulator's limit of {MAX_REPLICAS}",
        )
    return value


class _IPv4Server(ThreadingHTTPServer):
    # The console scrapes every pod at once; with the default backlog of 5,
    # connections past the fifth wait for a SYN retransmit, about 1 s.
    request_queue_size = 128


class _IPv6Server(_IPv4Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    emulator: Emulator
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes. With Nagle's algorithm the second
    # waits for the client's delayed ACK, about 40 ms per response on Linux.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            body = self._read_body()
            code, payload = self.emulator.dispatch(
                method, parts.path, parse_qs(parts.query), body, content_type
            )
        except HttpError as exc:
            code, payload = (
                exc.code,
                kube.status_body(exc.code, exc.reason, exc.message),
            )
        except Exception as exc:  # a bug must not kill the server thread
            logger.exception("fleetsim: %s %s failed", method, self.path)
            code, payload = 500, kube.status_body(500, "InternalError", str(exc))
        self._send(code, payload)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HttpError(
                413, "RequestEntityTooLarge", "request body is larger than 1 MiB"
            )
        if length == 0:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            raise HttpError(
                400, "BadRequest", "request body is not valid JSON"
            ) from None

    def _send(self, code: int, payload: Any) -> None:
        if isinstance(payload, bytes):
            data = payload
            content_type = "text/plain; version=0.0.4; charset=utf-8"
        else:
            data = json.dumps(payload).encode()
            content_type = "application/json"
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
