"""Virtual-time model of a vLLM fleet on a GPU cluster.

The cluster contains one Deployment per variant, GPU nodes per accelerator
type, and pods that each run one `ReplicaEngine`. Requests arrive from an
iterator of (time, prompt tokens, output tokens) or through `submit`, and
go to the least loaded Ready pod: fewest waiting requests first, then the
lowest KV-cache usage, like the llm-d endpoint picker. The ranking uses
each pod's load at the request's arrival time, but a pod is brought to that
time only when its rank could have improved since it was last advanced
(see `Cluster`), so busy pods advance many iterations at once.

Pod life: a new pod waits for a free GPU of its type (phase Pending), is
Pending for the first half of the start-up delay (image pull), Running and
not ready for the second half (model load), then Ready. A pod removed by a
scale-down loses its waiting and running requests at once (vLLM is not
drained), stays listed as terminating for `TERMINATION_S`, then frees its
GPU.

Determinism: pod names and UIDs come from a generator seeded with `seed`;
the engines draw no random numbers.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetsim.replica import (
    AcceleratorProfile,
    EngineConfig,
    ReplicaEngine,
    Request,
    RequestState,
    load_accelerators,
)

__all__ = [
    "AcceleratorProfile",
    "Cluster",
    "Deployment",
    "EngineConfig",
    "FleetSpec",
    "Pod",
    "ReplicaEngine",
    "Request",
    "RequestState",
    "VariantSpec",
    "load_accelerators",
    "load_fleet",
]

logger = logging.getLogger(__name__)

# A removed pod stays listed (terminating) this long before its GPU is free.
TERMINATION_S = 5.0
# Nodes carry at most this many GPUs each.
GPUS_PER_NODE = 8
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# Workload kinds of a variant. A StatefulSet or LeaderWorkerSet names its pods
# (or groups) by ordinal and removes the highest ordinal first.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "LeaderWorkerSet")
ORDERED_KINDS = frozenset({"StatefulSet", "LeaderWorkerSet"})
# Characters Kubernetes uses for generated name suffixes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class VariantSpec:
    name: str
    accelerator: str
    replicas: int
    gpus_per_replica: int
    engine: EngineConfig
    # terminationGracePeriodSeconds of the pod template; Kubernetes' default.
    termination_grace_period_s: int = 30
    kind: str = "Deployment"
    # Pods per LeaderWorkerSet group (leader included); 1 for other kinds.
    group_size: int = 1


@dataclass(frozen=True)
class FleetSpec:
    """Fleet file contents: namespace, model, GPU inventory and variants."""

    namespace: str
    model: str
    gpus: dict[str, int]
    node_labels: dict[str, str]
    variants: tuple[VariantSpec, ...]


def load_fleet(path: Path) -> FleetSpec:
    """Read a fleet file such as `data/demo_fleet.json`."""
    raw: dict[str, Any] = json.loads(path.read_text())
    base_engine: dict[str, Any] = raw.get("engine", {})
    variants = []
    for item in raw["variants"]:
        if item["accelerator"] not in raw["accelerators"]:
            raise ValueError(
                f"{path}: variant {item['name']!r} uses accelerator "
                f"{item['accelerator']!r}, which is not in 'accelerators'"
            )
        settings = {**base_engine, **item.get("engine", {})}
        kind, group_size = _workload_kind(path, item)
        variants.append(
            VariantSpec(
                name=item["name"],
                accelerator=item["accelerator"],
                replicas=int(item.get("replicas", 1)),
                gpus_per_replica=int(item.get("gpus_per_replica", 1)),
                engine=EngineConfig(**settings),
                termination_grace_period_s=int(
                    item.get("termination_grace_period_s", 30)
                ),
                kind=kind,
                group_size=group_size,
            )
        )
    accelerators: dict[str, dict[str, Any]] = raw["accelerators"]
    return FleetSpec(
        namespace=raw["namespace"],
        model=raw["model"],
        gpus={name: int(a["gpus"]) for name, a in accelerators.items()},
        node_labels={
            name: str(a["node_label_value"]) for name, a in accelerators.items()
        },
        variants=tuple(variants),
    )


def _workload_kind(path: Path, item: dict[str, Any]) -> tuple[str, int]:
    """Return a variant's workload kind and LeaderWorkerSet group size."""
    kind = str(item.get("kind", "Deployment"))
    if kind not in WORKLOAD_KINDS:
        raise ValueError(
            f"{path}: variant {item['name']!r} has kind {kind!r}; "
            f"use one of {', '.join(WORKLOAD_KINDS)}"
        )
    size = int(item.get("group_size", 2 if kind == "LeaderWorkerSet" else 1))
    gpus = int(item.get("gpus_per_replica", 1))
    if kind != "LeaderWorkerSet" and size != 1:
        raise ValueError(
            f"{path}: variant {item['name']!r} sets group_size {size}, "
            "which only a LeaderWorkerSet takes"
        )
    if size < 1 or gpus % size:
        raise ValueError(
            f"{path}: variant {item['name']!r} has group_size {size}; it must be "
            f"at least 1 and divide gpus_per_replica ({gpus})"
        )
    return kind, size


@dataclass
class Node:
    name: str
    accelerator: str
    label_value: str
    gpus: int
    used: int = 0
    uid: str = ""


@dataclass
class Pod:
    """One replica as the Kubernetes API reports it, with its engine."""

    name: str
    uid: str
    deployment: str
    seq: int
    created_at: float
    engine: ReplicaEngine
    gpus: int
    node: Node | None = None
    scheduled_at: float | None = None
    ready_at: float | None = None
    deleted_at: float | None = None
    gone_at: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: int = 0
    restart_count: int = 0
    crash_looping: bool = False
    # Pod index of a StatefulSet, group index of a LeaderWorkerSet; else None.
    ordinal: int | None = None

    def is_scheduled(self) -> bool:
        return self.node is not None

    def is_ready(self, now: float) -> bool:
        return (
            self.ready_at is not None
            and self.ready_at <= now
            and self.deleted_at is None
            and not self.crash_looping
        )

    def phase(self, now: float, startup_delay_s: float) -> str:
        if self.scheduled_at is None:
            return "Pending"
        if self.ready_at is not None and now < self.ready_at - startup_delay_s / 2.0:
            return "Pending"
        return "Running"

    def deletion_cost(self) -> int:
        try:
            return int(self.annotations.get(DELETION_COST_ANNOTATION, "0"))
        except ValueError:
            return 0


@dataclass
class Deployment:
    variant: VariantSpec
    uid: str
    template_hash: str
    replicas: int
    generation: int = 1
    resource_version: int = 0
    pods: list[Pod] = field(default_factory=list)
    retired: list[Pod] = field(default_factory=list)
    lost: int = 0
    # metadata.annotations of the workload object itself.
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def kind(self) -> str:
        return self.variant.kind

    def live_pods(self) -> list[Pod]:
        """Pods that are not terminating."""
        return [p for p in self.pods if p.deleted_at is None]


class _Arrivals:
    """Peekable iterator of (time s, prompt tokens, output tokens)."""

    def __init__(self, source: Iterator[tuple[float, int, int]] | None) -> None:
        self._source = source
        self.head: tuple[float, int, int] | None = (
            next(source, None) if source else None
        )

    def pop(self) -> tuple[float, int, int]:
        assert self.head is not None
        assert self._source is not None
        item = self.head
        self.head = next(self._source, None)
        return item


class _RouteGroup:
    """Ready pods of one Deployment and the router's view of their load.

    A key ranks a pod: fewest waiting requests, then the lowest KV-cache
    usage, then the fewest running requests, then the oldest pod. Its last
    item is the pod's index in `pods`. A key is exact at its `fresh_at`
    time (minus infinity when that time is not known) and a lower bound
    after it, until the time the pod's engine predicted for a fall.
    """

    __slots__ = (
        "max_model_len", "max_tokens", "pods", "total_blocks", "keys",
        "fresh_at", "stamps",
    )  # fmt: skip

    def __init__(self, deployment: Deployment, now: float) -> None:
        engine_config = deployment.variant.engine
        self.max_model_len = engine_config.max_model_len
        self.pods = [p for p in deployment.pods if p.is_ready(now)]
        # Every pod of a Deployment has the same KV pool. A pool of 0 blocks
        # takes no request, so its keys never need the usage.
        self.total_blocks = self.pods[0].engine.total_blocks if self.pods else 0
        self.max_tokens = self.total_blocks * engine_config.block_size
        self.keys = [self._key(index) for index in range(len(self.pods))]
        self.fresh_at = [-math.inf] * len(self.pods)
        # Bumped on every new prediction. An entry of the due heap with an
        # older stamp is out of date and skipped.
        self.stamps = [0] * len(self.pods)

    def _key(self, index: int) -> tuple[int, float, int, int, int]:
        engine = self.pods[index].engine
        return (
            engine.n_waiting,
            engine.used_blocks / (self.total_blocks or 1),
            len(engine.running),
            self.pods[index].seq,
            index,
        )

    def update(self, index: int, now: float) -> None:
        """Store a pod's key, exact at `now`, and void its older predictions."""
        self.keys[index] = self._key(index)
        self.fresh_at[index] = now
        self.stamps[index] += 1


class Cluster:
    """Deployments, nodes, pods and the router, advanced in virtual time.

    Routing is exact but lazy. Every live pod is brought to the same time
    at each event and at the end of `advance_to`. Between those, a pod is
    advanced to a request's arrival time in two cases. The first is when
    the arrival comes after the time its engine predicted its rank key
    could first fall (`ReplicaEngine.rank_steady_until`). The second is
    when its stored key is the lowest. A stored key is a lower bound of the
    current one, so the router advances that pod and ranks again until the
    lowest key is current. The choice is the one that advancing every pod
    to every arrival would make.
    """

    # Level of the log line for a pod removed with requests in flight.
    loss_log_level = logging.INFO

    def __init__(
        self,
        fleet: FleetSpec,
        profiles: dict[str, AcceleratorProfile],
        *,
        startup_delay_s: float = 30.0,
        seed: int = 0,
        arrivals: Iterator[tuple[float, int, int]] | None = None,
    ) -> None:
        if startup_delay_s < 0:
            raise ValueError(f"startup_delay_s must be >= 0, got {startup_delay_s}")
        missing = {v.accelerator for v in fleet.variants} - set(profiles)
        if missing:
            raise ValueError(f"no accelerator profile for {sorted(missing)}")
        self.fleet = fleet
        self.profiles = profiles
        self.startup_delay_s = startup_delay_s
        self.now = 0.0
        # Rebuilt after any change to a pod or Deployment (a new revision)
        # and after every sync.
        self._routes: list[_RouteGroup] | None = None
        # (time the rank may fall, group index, pod index, stamp) per pod.
        self._due: list[tuple[float, int, int, int]] = []
        self.revision = 0
        self.rng = random.Random(seed)
        self.arrivals = _Arrivals(arrivals)
        self.next_rid = 0
        self.pod_seq = 0
        self.arrived = 0
        self.rejected: dict[str, int] = {"too_long": 0, "no_ready_replica": 0}
        self.events: list[tuple[float, int, Pod]] = []
        self.nodes = self._make_nodes()
        self.deployments: dict[str, Deployment] = {}
        for variant in fleet.variants:
            self.deployments[variant.name] = Deployment(
                variant=variant,
                uid=self.new_uid(),
                template_hash=self._random_name(10),
                replicas=variant.replicas,
                resource_version=self.next_revision(),
            )
            for _ in range(variant.replicas):
                self._create_pod(self.deployments[variant.name], ready_now=True)

    # -- helpers ----------------------------------------------------------

    def next_revision(self) -> int:
        self.revision += 1
        self._routes = None
        return self.revision

    def new_uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _random_name(self, length: int) -> str:
        return "".join(self.rng.choice(_NAME_ALPHABET) for _ in range(length))

    def _make_nodes(self) -> list[Node]:
        nodes = []
        for accelerator, total in sorted(self.fleet.gpus.items()):
            index = 0
            while total > 0:
                gpus = min(GPUS_PER_NODE, total)
                name = f"gpu-{accelerator.lower()}-{index}"
                label = self.fleet.node_labels[accelerator]
                nodes.append(Node(name, accelerator, label, gpus, uid=self.new_uid()))
                total -= gpus
                index += 1
        return nodes

    # -- pods -------------------------------------------------------------

    def _create_pod(self, deployment: Deployment, *, ready_now: bool = False) -> Pod:
        variant = deployment.variant
        self.pod_seq += 1
        ordinal = None
        if deployment.kind in ORDERED_KINDS:
            # The lowest free ordinal. A real StatefulSet waits until a
            # terminating pod of that ordinal is gone; the model does not.
            used = {pod.ordinal for pod in deployment.pods}
            ordinal = next(i for i in range(len(used) + 1) if i not in used)
            name = f"{deployment.name}-{ordinal}"
        else:
            suffix = self._random_name(5)
            name = f"{deployment.name}-{deployment.template_hash}-{suffix}"
        engine = ReplicaEngine(
            self.profiles[variant.accelerator], variant.engine, self.now
        )
        pod = Pod(
            name=name,
            uid=self.new_uid(),
            deployment=deployment.name,
            seq=self.pod_seq,
            created_at=self.now,
            engine=engine,
            gpus=variant.gpus_per_replica,
            resource_version=self.next_revision(),
            ordinal=ordinal,
        )
        deployment.pods.append(pod)
        self._schedule(pod, ready_now=ready_now)
        return pod

    def _schedule(self, pod: Pod, *, ready_now: bool = False) -> bool:
        accelerator = self.deployments[pod.deployment].variant.accelerator
        for node in self.nodes:
            if node.accelerator == accelerator and node.gpus - node.used >= pod.gpus:
                node.used += pod.gpus
                pod.node = node
                pod.scheduled_at = self.now
                delay = 0.0 if ready_now else self.startup_delay_s
                pod.ready_at = self.now + delay
                pod.resource_version = self.next_revision()
                if delay > 0:
                    heapq.heappush(self.events, (self.now + delay / 2.0, pod.seq, pod))
                    heapq.heappush(self.events, (pod.ready_at, pod.seq, pod))
                pod.engine.now = self.now
                return True
        return False

    def _schedule_pending(self) -> None:
        pending = [p for d in self.deployments.values() for p in d.live_pods()]
        for pod in sorted(pending, key=lambda p: p.seq):
            if not pod.is_scheduled():
                self._schedule(pod)

    def _remove_pod(self, deployment: Deployment, pod: Pod) -> None:
        lost = pod.engine.abort_all()
        deployment.lost += lost
        pod.deleted_at = self.now
        pod.resource_version = self.next_revision()
        if lost:
            logger.log(
                self.loss_log_level,
                "pod %s removed while busy: %d requests lost",
                pod.name,
                lost,
            )
        if pod.node is None:
            self._forget_pod(deployment, pod)
            return
        pod.gone_at = self.now + TERMINATION_S
        heapq.heappush(self.events, (pod.gone_at, pod.seq, pod))

    def _forget_pod(self, deployment: Deployment, pod: Pod) -> None:
        deployment.pods.remove(pod)
        deployment.retired.append(pod)
        if pod.node is not None:
            pod.node.used -= pod.gpus
            pod.node = None
        self.next_revision()
        self._schedule_pending()

    def victim_order(self, deployment: Deployment) -> list[Pod]:
        """Rank live pods for deletion the way a ReplicaSet does, first out first.

        Unscheduled before scheduled, Pending before Running, not ready
        before ready, lower pod-deletion-cost first, then the newest. A
        StatefulSet or LeaderWorkerSet removes the highest ordinal first.
        """
        if deployment.kind in ORDERED_KINDS:
            live = deployment.live_pods()
            return sorted(live, key=lambda pod: -(pod.ordinal or 0))
        now = self.now
        delay = self.startup_delay_s

        def rank(pod: Pod) -> tuple[int, int, int, int, int]:
            return (
                int(pod.is_scheduled()),
                int(pod.phase(now, delay) == "Running"),
                int(pod.is_ready(now)),
                pod.deletion_cost(),
                -pod.seq,
            )

        return sorted(deployment.live_pods(), key=rank)

    # -- public operations ------------------------------------------------

    def scale(self, name: str, replicas: int) -> None:
        """Set a Deployment's replica count; pods are created or removed now."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        deployment = self.deployments[name]
        if replicas != deployment.replicas:
            deployment.replicas = replicas
            deployment.generation += 1
        deployment.resource_version = self.next_revision()
        live = deployment.live_pods()
        for _ in range(replicas - len(live)):
            self._create_pod(deployment)
        for pod in self.victim_order(deployment)[: max(0, len(live) - replicas)]:
            self._remove_pod(deployment, pod)

    def set_annotations(self, pod: Pod, changes: dict[str, str | None]) -> None:
        """Merge annotations into a pod; a None value removes the key."""
        for key, value in changes.items():
            if value is None:
                pod.annotations.pop(key, None)
            else:
                pod.annotations[key] = str(value)
        pod.resource_version = self.next_revision()

    def crash_loop(self, pod: Pod, restarts: int = 3) -> None:
        """Put a pod in CrashLoopBackOff: not Ready, its requests lost, no traffic."""
        if restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
        deployment = self.deployments[pod.deployment]
        deployment.lost += pod.engine.abort_all()
        pod.crash_looping = True
        pod.restart_count = restarts
        pod.resource_version = self.next_revision()

    def find_pod(self, name: str) -> Pod | None:
        for deployment in self.deployments.values():
            for pod in deployment.pods:
                if pod.name == name:
                    return pod
        return None

    def submit(self, prompt_tokens: int, output_tokens: int) -> Request | None:
        """Route one request arriving now; None when it is rejected."""
        self.arrived += 1
        request = Request(self.next_rid, self.now, prompt_tokens, output_tokens)
        self.next_rid += 1
        total = prompt_tokens + request.output
        routes = self._routes if self._routes is not None else self._build_routes()
        self._bring_due_pods()
        while True:
            best: tuple[int, float, int, int, int] | None = None
            best_group = -1
            fits_somewhere = False
            for number, group in enumerate(routes):
                if total > group.max_model_len:
                    continue
                fits_somewhere = True
                if not group.keys or total > group.max_tokens:
                    continue
                key = min(group.keys)
                if best is None or key < best:
                    best, best_group = key, number
            if best is None:
                reason = "no_ready_replica" if fits_somewhere else "too_long"
                self.rejected[reason] += 1
                request.state = RequestState.REJECTED
                return None
            index = best[-1]
            if routes[best_group].fresh_at[index] == self.now:
                break
            self._bring(best_group, index)
        routes[best_group].pods[index].engine.enqueue(request)
        self._predict(best_group, index)
        return request

    def _build_routes(self) -> list[_RouteGroup]:
        routes = [_RouteGroup(d, self.now) for d in self.deployments.values()]
        self._routes = routes
        self._due = []
        for number, group in enumerate(routes):
            for index in range(len(group.pods)):
                self._predict(number, index, fresh=False)
        return routes

    def _predict(self, number: int, index: int, *, fresh: bool = True) -> None:
        """Store a pod's current key and when it may first fall."""
        assert self._routes is not None
        group = self._routes[number]
        group.update(index, self.now if fresh else -math.inf)
        steady_until = group.pods[index].engine.rank_steady_until()
        entry = (steady_until, number, index, group.stamps[index])
        heapq.heappush(self._due, entry)

    def _bring(self, number: int, index: int) -> None:
        """Advance one pod to now and store its key."""
        assert self._routes is not None
        self._routes[number].pods[index].engine.advance_to(self.now)
        self._predict(number, index)

    def _bring_due_pods(self) -> None:
        """Advance every pod whose key may have fallen by now."""
        assert self._routes is not None
        routes = self._routes
        due = self._due
        while due and due[0][0] < self.now:
            _, number, index, stamp = heapq.heappop(due)
            if routes[number].stamps[index] == stamp:
                self._bring(number, index)

    def advance_to(self, t_end: float) -> None:
        """Run the cluster until `t_end`, delivering arrivals on the way."""
        while True:
            t_next = t_end
            if self.events:
                t_next = min(t_next, self.events[0][0])
            self._deliver_arrivals(t_next)
            t_next = max(t_next, self.now)
            self._sync(t_next)
            self._process_events()
            while self.arrivals.head is not None and self.arrivals.head[0] <= self.now:
                _, prompt, output = self.arrivals.pop()
                self.submit(prompt, output)
            if t_next >= t_end:
                return

    def _deliver_arrivals(self, t_stop: float) -> None:
        """Route the arrivals before `t_stop` without a sync."""
        arrivals = self.arrivals
        while arrivals.head is not None and arrivals.head[0] < t_stop:
            arrival, prompt, output = arrivals.pop()
            self.now = max(self.now, arrival)
            self.submit(prompt, output)

    def _sync(self, t: float) -> None:
        """Bring every live pod to time `t`."""
        for deployment in self.deployments.values():
            for pod in deployment.pods:
                if pod.deleted_at is None:
                    pod.engine.advance_to(t)
        self.now = t
        self._routes = None

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now + seconds)

    def _process_events(self) -> None:
        while self.events and self.events[0][0] <= self.now:
            _, _, pod = heapq.heappop(self.events)
            pod.resource_version = self.next_revision()
            deployment = self.deployments[pod.deployment]
            deployment.resource_version = self.next_revision()
            if (
                pod.gone_at is not None
                and pod.gone_at <= self.now
                and pod in deployment.pods
            ):
                self._forget_pod(deployment, pod)

    # -- read side --------------------------------------------------------

    def pods(self, name: str) -> list[Pod]:
        return list(self.deployments[name].pods)

    def deployment_counts(self, name: str) -> dict[str, int]:
        deployment = self.deployments[name]
        live = deployment.live_pods()
        all_pods = deployment.pods + deployment.retired
        return {
            "replicas": deployment.replicas,
            "current": len(live),
            "ready": sum(1 for p in live if p.is_ready(self.now)),
            "pending": sum(1 for p in live if not p.is_ready(self.now)),
            "terminating": len(deployment.pods) - len(live),
            "completed": sum(p.engine.counters.success for p in all_pods),
            "timed_out": sum(p.engine.counters.timed_out for p in all_pods),
            "preemptions": sum(p.engine.counters.preemptions for p in all_pods),
            "lost_requests": deployment.lost,
        }

    def status(self) -> dict[str, Any]:
        """Return counters of the whole run as plain data."""
        per_variant = {name: self.deployment_counts(name) for name in self.deployments}
        return {
            "sim_time_s": self.now,
            "arrived": self.arrived,
            "deployments": per_variant,
            "lost_requests": sum(c["lost_requests"] for c in per_variant.values()),
            "completed": sum(c["completed"] for c in per_variant.values()),
            "timed_out": sum(c["timed_out"] for c in per_variant.values()),
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected),
        }


def load_cluster(
    fleet_path: Path,
    accelerators_path: Path,
    **options: Any,
) -> Cluster:
    """Build a cluster from a fleet file and an accelerator table."""
    return Cluster(
        load_fleet(fleet_path), load_accelerators(accelerators_path), **options
    )
