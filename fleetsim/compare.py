"""Run scaling policies on one trace and fleet, side by side.

Each policy gets its own simulated cluster, fed the same requests. Metrics
are scraped every `SCRAPE_PERIOD_S` and read as one-minute peaks; the
policy decides every `CONTROL_PERIOD_S`; a new replica is ready after the
start-up delay. Requests are assigned to the fleet's service classes by a
seeded draw: each request is `batch` with probability `batch_fraction`,
else `interactive`, the same draw for every policy.

Reductions: a draining policy (`static-peak`, `oracle`, `wva-v1`, `wva`)
picks its victims, which receive no new requests and are removed once idle
or after the variant's termination grace period, losing what is left. The
HPA policies lower the count and the ReplicaSet removes the newest ready
pod at once, losing its requests.

`run_comparison(options, progress)` returns the result as plain data; the
command line is `python -m fleetsim compare`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetsim.accounting import ClassTargets, Tally, summarise
from fleetsim.engine import Cluster, FleetSpec, Pod, load_fleet
from fleetsim.policies import (
    DEFAULT_HPA_TARGETS,
    Demand,
    HpaPolicy,
    Observation,
    OraclePolicy,
    Policy,
    PolicyContext,
    ReplicaView,
    ServiceClassSpec,
    StaticPeakPolicy,
    VariantView,
    latency_profile,
)
from fleetsim.policies_capacity import benchmark_capacity, fit_profile
from fleetsim.policies_wva import WvaPolicy, WvaV1Policy
from fleetsim.replica import AcceleratorProfile, Request, load_accelerators
from fleetsim.trace import (
    SCALE_MODES,
    TRACE_FILES,
    TraceRequest,
    load_named_trace,
    scale_load,
    trace_period_s,
)
from optimizer.power import PowerCurve, replica_power_w
from optimizer.queueing import LatencyProfile

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_FLEET = DATA_DIR / "compare_fleet.json"
DEFAULT_ACCELERATORS = DATA_DIR / "accelerators.csv"
POLICY_NAMES = ("hpa-kv", "hpa-queue", "static-peak", "wva-v1", "wva", "oracle")
SCRAPE_PERIOD_S = 15.0
CONTROL_PERIOD_S = 30.0
PEAK_WINDOW_S = 60.0
# Token lengths are averaged over this much history of the counters.
TOKEN_WINDOW_S = 300.0
# After the last arrival the run goes on until every request has ended or
# this long has passed; the rest count as unfinished.
TAIL_S = 180.0
WARMUP_S = 300.0

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class CompareOptions:
    """Options of one comparison; `validate` raises ValueError naming the value."""

    trace: str = "azure-conv"
    scale: float = 1.0
    scale_mode: str = "superpose"
    fleet: Path = DEFAULT_FLEET
    policies: tuple[str, ...] = POLICY_NAMES
    seed: int = 1
    duration_s: float | None = None
    startup_delay_s: float = 120.0
    accelerators: Path = DEFAULT_ACCELERATORS
    trace_dir: Path = DATA_DIR / "traces"
    # Requests/s of one replica per variant name; benchmarked when None.
    replica_capacity_rps: dict[str, float] | None = None

    def validate(self) -> None:
        if self.trace not in TRACE_FILES:
            raise ValueError(
                f"unknown trace {self.trace!r}; expected one of "
                f"{', '.join(TRACE_FILES)}"
            )
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"--scale must be > 0, got {self.scale}")
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(
                f"unknown scale mode {self.scale_mode!r}; expected one of "
                f"{', '.join(SCALE_MODES)}"
            )
        if not Path(self.fleet).is_file():
            raise ValueError(f"fleet file not found: {self.fleet}")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise ValueError(f"--duration must be > 0, got {self.duration_s}")
        if not (math.isfinite(self.startup_delay_s) and self.startup_delay_s >= 0):
            raise ValueError(f"startup delay must be >= 0, got {self.startup_delay_s}")
        if not self.policies:
            raise ValueError("no policy given")
        # Two specs that run the same simulation would also collide as keys of
        # the result when spelled alike, so the second is rejected.
        seen: dict[tuple[str, float | None, str | None], str] = {}
        for text in self.policies:
            spec = parse_policy(text)
            target = spec.target
            if target is None:
                target = DEFAULT_HPA_TARGETS.get(spec.name)
            key = (spec.name, target, spec.accelerator)
            if key in seen:
                earlier = seen[key]
                if earlier == text:
                    raise ValueError(f"policy {text!r} is listed twice")
                raise ValueError(f"policy {text!r} is the same as {earlier!r}")
            seen[key] = text


@dataclass(frozen=True)
class PolicySpec:
    """A policy name with an optional HPA target and single-accelerator fleet.

    Written `NAME[=TARGET][@ACCELERATOR]`, e.g. `hpa-kv=0.5@H100-80GB`.
    """

    text: str
    name: str
    target: float | None = None
    accelerator: str | None = None


def parse_policy(text: str) -> PolicySpec:
    # The command line splits --policies at commas, and the spec becomes a key
    # that `images --policies` must be able to name. A comma can reach this
    # point only through the Python API, with an accelerator of a custom
    # accelerators file.
    if "," in text:
        raise ValueError(f"invalid policy {text!r}: a policy cannot contain a comma")
    body, has_accelerator, accelerator = text.partition("@")
    name, has_target, raw_target = body.partition("=")
    if name not in POLICY_NAMES:
        raise ValueError(
            f"unknown policy {name!r} in {text!r}; expected one of "
            f"{', '.join(POLICY_NAMES)}"
        )
    if has_accelerator and not accelerator:
        raise ValueError(
            f"empty accelerator in {text!r}: write NAME@ACCELERATOR, e.g. wva@H100-80GB"
        )
    target = None
    if has_target:
        if name not in DEFAULT_HPA_TARGETS:
            raise ValueError(f"policy {name!r} takes no target, got {text!r}")
        if not raw_target:
            raise ValueError(
                f"empty target in {text!r}: write NAME=TARGET, "
                f"e.g. {name}={DEFAULT_HPA_TARGETS[name]}"
            )
        try:
            target = float(raw_target)
        except ValueError:
            raise ValueError(
                f"invalid target {raw_target!r} in {text!r}: expected a number"
            ) from None
        if not (math.isfinite(target) and target > 0):
            raise ValueError(f"target must be > 0 in {text!r}, got {raw_target}")
    return PolicySpec(text, name, target, accelerator or None)


@dataclass(frozen=True)
class FleetSetup:
    """The fleet file read for a comparison."""

    spec: FleetSpec
    bounds: dict[str, tuple[int, int]]
    classes: tuple[ServiceClassSpec, ...]
    sizing_class: ServiceClassSpec
    batch_fraction: float
    max_waiting_per_replica: int
    grace_s: dict[str, float]


def load_setup(path: Path) -> FleetSetup:
    """Read and check a fleet file; raise ValueError naming the file and field."""
    try:
        setup = _read_setup(Path(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"fleet file {path} is not valid JSON: {exc}") from None
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(
            f"fleet file {path} is missing a field or has one of the wrong type: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    _check_setup(Path(path), setup)
    return setup


def _read_setup(path: Path) -> FleetSetup:
    raw: dict[str, Any] = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise TypeError(
            f"the file must contain a JSON object, not {type(raw).__name__}"
        )
    spec = load_fleet(path)
    bounds = {
        item["name"]: (int(item.get("min_replicas", 0)), int(item["max_replicas"]))
        for item in raw["variants"]
    }
    classes = tuple(
        ServiceClassSpec(
            c["name"],
            int(c.get("priority", 1)),
            float(c["ttft_ms"]),
            float(c["itl_ms"]),
        )
        for c in raw["service_classes"]
    )
    by_name = {c.name: c for c in classes}
    sizing = raw.get("model_service_class", classes[0].name if classes else "")
    if sizing not in by_name:
        raise KeyError(
            f"model_service_class {sizing!r} is not in service_classes "
            f"({', '.join(by_name) or 'none'})"
        )
    router = raw.get("router", {})
    return FleetSetup(
        spec=spec,
        bounds=bounds,
        classes=classes,
        sizing_class=by_name[sizing],
        batch_fraction=float(raw.get("batch_fraction", 0.2)),
        max_waiting_per_replica=int(router.get("max_waiting_per_replica", 128)),
        grace_s={
            item["name"]: float(item.get("termination_grace_period_s", 30))
            for item in raw["variants"]
        },
    )


def _check_setup(path: Path, setup: FleetSetup) -> None:
    """Reject fleets that would simulate without error but mean nothing."""
    if not setup.spec.variants:
        raise ValueError(f"fleet file {path}: 'variants' is empty")
    for name, gpus in setup.spec.gpus.items():
        if gpus < 0:
            raise ValueError(f"fleet file {path}: accelerator {name!r} has {gpus} GPUs")
    if not any(setup.spec.gpus.get(v.accelerator, 0) > 0 for v in setup.spec.variants):
        raise ValueError(f"fleet file {path}: no variant's accelerator has a GPU")
    if not (0.0 <= setup.batch_fraction <= 1.0):
        raise ValueError(
            f"fleet file {path}: batch_fraction {setup.batch_fraction!r} is not "
            "between 0 and 1"
        )
    for c in setup.classes:
        if not (c.ttft_ms > 0 and c.itl_ms > 0):
            raise ValueError(
                f"fleet file {path}: service class {c.name!r} needs ttft_ms and "
                "itl_ms above 0"
            )


class CompareCluster(Cluster):
    """A cluster whose router can reject on a full queue and that drains victims.

    Draining pods stay live and keep running, but receive no requests and
    no longer count towards their Deployment's replicas.
    """

    # Requests lost to a scale-down are counted in the results, so one log
    # line per busy pod removed is only noise beside a worker's other logs.
    loss_log_level = logging.DEBUG

    def __init__(
        self,
        *args: Any,
        max_waiting: int,
        grace_s: dict[str, float],
        **kwargs: Any,
    ) -> None:
        self.draining: dict[str, float] = {}
        super().__init__(*args, **kwargs)
        self.max_waiting = max_waiting
        self.grace_s = grace_s

    def serving(self, pod: Pod) -> bool:
        return pod.is_ready(self.now) and pod.name not in self.draining

    def counted_pods(self, name: str) -> list[Pod]:
        """Live pods that count towards the Deployment's replicas."""
        return [
            p for p in self.deployments[name].live_pods() if p.name not in self.draining
        ]

    def scale(self, name: str, replicas: int) -> None:
        """Set the count; extra pods go in ReplicaSet order at once, undrained."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        deployment = self.deployments[name]
        if replicas != deployment.replicas:
            deployment.replicas = replicas
            deployment.generation += 1
        deployment.resource_version = self.next_revision()
        live = self.counted_pods(name)
        for _ in range(replicas - len(live)):
            self._create_pod(deployment)
        order = [p for p in self.victim_order(deployment) if p in live]
        for pod in order[: max(0, len(live) - replicas)]:
            self._remove_pod(deployment, pod)

    def drain_to(self, name: str, replicas: int, victims: Sequence[str]) -> None:
        """Lower the count; pods not ready go at once, ready victims drain."""
        deployment = self.deployments[name]
        live = self.counted_pods(name)
        excess = len(live) - replicas
        if excess <= 0:
            self.scale(name, replicas)
            return
        deployment.replicas = replicas
        deployment.generation += 1
        by_name = {p.name: p for p in live}
        newest_first = sorted(live, key=lambda p: -p.seq)
        ranked = [p.name for p in newest_first if not p.is_ready(self.now)]
        ranked += [v for v in victims if v in by_name]
        ranked += [p.name for p in newest_first]
        chosen = [by_name[n] for n in list(dict.fromkeys(ranked))[:excess]]
        grace = self.grace_s.get(name, 30.0)
        for pod in chosen:
            if pod.is_ready(self.now):
                self.draining[pod.name] = self.now + grace
            else:
                self._remove_pod(deployment, pod)

    def finish_drains(self) -> None:
        for deployment in self.deployments.values():
            for pod in list(deployment.pods):
                deadline = self.draining.get(pod.name)
                if deadline is None or pod.deleted_at is not None:
                    continue
                engine = pod.engine
                if (
                    not engine.running and not engine.n_waiting
                ) or self.now >= deadline:
                    del self.draining[pod.name]
                    self._remove_pod(deployment, pod)

    def route(self, prompt: int, output: int) -> tuple[Request | None, str]:
        """Route one request arriving now; return it, or None and the rejection."""
        self.arrived += 1
        request = Request(self.next_rid, self.now, prompt, output)
        self.next_rid += 1
        total = prompt + request.output
        candidates = []
        fits_somewhere = False
        for deployment in self.deployments.values():
            if total > deployment.variant.engine.max_model_len:
                continue
            fits_somewhere = True
            for pod in deployment.pods:
                if (
                    self.serving(pod)
                    and pod.engine.blocks_for(total) <= pod.engine.total_blocks
                ):
                    candidates.append(pod)
        if not fits_somewhere:
            return None, "too_long"
        if not candidates:
            return None, "rejected_no_replica"
        target = min(
            candidates,
            key=lambda p: (
                p.engine.n_waiting,
                p.engine.kv_usage,
                len(p.engine.running),
                p.seq,
            ),
        )
        if target.engine.n_waiting >= self.max_waiting:
            return None, "rejected_queue_full"
        target.engine.enqueue(request)
        return request, ""


@dataclass
class _Counters:
    at_s: float
    success: int
    first_tokens: int
    prompt_tokens: int
    generation_tokens: int
    in_system: int
    success_by_variant: dict[str, int] = field(default_factory=dict)
    # Requests the router received, rejected ones included.
    arrived: int = 0


class PolicyRun:
    """One policy driving one simulated cluster through the whole trace."""

    def __init__(
        self,
        policy: Policy,
        cluster: CompareCluster,
        setup: FleetSetup,
        variants: Sequence[str],
    ) -> None:
        self.policy = policy
        self.cluster = cluster
        self.setup = setup
        self.variants = list(variants)
        self.tally = Tally()
        # Every change applied, in simulated time, warm-up included.
        self.events: list[tuple[float, str, int, int]] = []
        self.scrapes: dict[str, deque[tuple[float, float, float, float]]] = {}
        self.counters: deque[_Counters] = deque()
        self.arrivals_since_scrape = 0
        self.profiles: dict[str, AcceleratorProfile] = {}
        self.curves: dict[str, PowerCurve] = {}
        self.tally.series = {"t": [], "arrival_rps": [], "failures": []}
        for name in self.variants:
            self.tally.series[f"replicas:{name}"] = []
            self.tally.series[f"ready:{name}"] = []
            self.tally.series[f"kv:{name}"] = []

    # -- scrape: metrics, cost, power and the time series ------------------

    def scrape(self, counted: bool = True) -> None:
        """Sample every pod; only a counted scrape adds cost and energy."""
        cluster = self.cluster
        now = cluster.now
        series = self.tally.series
        series["t"].append(now - WARMUP_S)
        series["arrival_rps"].append(self.arrivals_since_scrape / SCRAPE_PERIOD_S)
        self.arrivals_since_scrape = 0
        failures = sum(self.tally.rejected.values())
        for name in self.variants:
            deployment = cluster.deployments[name]
            accelerator = deployment.variant.accelerator
            curve = self.curves[accelerator]
            price = self.profiles[accelerator].usd_per_gpu_hour
            holding = ready = 0
            kv_values = []
            for pod in deployment.pods:
                if pod.node is None:
                    continue
                holding += 1
                is_ready = pod.is_ready(now)
                kv = pod.engine.kv_usage if is_ready else 0.0
                watts = replica_power_w(curve, kv, pod.gpus, starting=not is_ready)
                if counted:
                    self.tally.add_interval(
                        SCRAPE_PERIOD_S, pod.gpus, price * pod.gpus, watts
                    )
                if is_ready and pod.name not in cluster.draining:
                    ready += 1
                    kv_values.append(kv)
                    self.scrapes.setdefault(pod.name, deque()).append(
                        (
                            now,
                            kv,
                            float(pod.engine.n_waiting),
                            float(len(pod.engine.running)),
                        )
                    )
            series[f"replicas:{name}"].append(holding)
            series[f"ready:{name}"].append(ready)
            series[f"kv:{name}"].append(
                sum(kv_values) / len(kv_values) if kv_values else None
            )
            failures += deployment.lost
            failures += sum(
                p.engine.counters.timed_out
                for p in deployment.pods + deployment.retired
            )
        series["failures"].append(failures)
        for samples in self.scrapes.values():
            while samples and samples[0][0] <= now - PEAK_WINDOW_S:
                samples.popleft()

    def peak(self, pod: str) -> tuple[float, float, float] | None:
        samples = self.scrapes.get(pod)
        if not samples:
            return None
        return (
            max(s[1] for s in samples),
            max(s[2] for s in samples),
            max(s[3] for s in samples),
        )

    # -- control: observe, decide, apply ------------------------------------

    def _read_counters(self) -> _Counters:
        success = first = prompt = generated = in_system = 0
        by_variant = {}
        for name in self.variants:
            deployment = self.cluster.deployments[name]
            variant_success = 0
            for pod in deployment.pods + deployment.retired:
                counters = pod.engine.counters
                variant_success += counters.success
                first += counters.ttft.count
                prompt += counters.prompt_tokens
                generated += counters.generation_tokens
                if pod.deleted_at is None:
                    in_system += pod.engine.n_waiting + len(pod.engine.running)
            by_variant[name] = variant_success
            success += variant_success
        return _Counters(
            self.cluster.now,
            success,
            first,
            prompt,
            generated,
            in_system,
            by_variant,
            self.cluster.arrived,
        )

    def measure_demand(self) -> tuple[Demand, dict[str, float]]:
        """Arrival rate = completions + growth of waiting and running, per period."""
        now_counters = self._read_counters()
        self.counters.append(now_counters)
        while (
            self.counters and self.counters[0].at_s < now_counters.at_s - TOKEN_WINDOW_S
        ):
            self.counters.popleft()
        previous = self.counters[-2] if len(self.counters) > 1 else None
        if previous is None:
            return Demand(0.0, 0.0, None, None), {}
        period = max(1e-9, now_counters.at_s - previous.at_s)
        completion = (now_counters.success - previous.success) / period
        growth = (now_counters.in_system - previous.in_system) / period
        oldest = self.counters[0]
        first = now_counters.first_tokens - oldest.first_tokens
        done = now_counters.success - oldest.success
        avg_input = (
            (now_counters.prompt_tokens - oldest.prompt_tokens) / first
            if first
            else None
        )
        avg_output = (
            (now_counters.generation_tokens - oldest.generation_tokens) / done
            if done
            else None
        )
        # The router's request rate over one minute, like Prometheus's
        # `rate(...[1m])` of the gateway's counter.
        start = next(
            c for c in self.counters if c.at_s >= now_counters.at_s - PEAK_WINDOW_S
        )
        if start is now_counters:
            start = previous
        gateway = (now_counters.arrived - start.arrived) / max(
            1e-9, now_counters.at_s - start.at_s
        )
        by_variant = {
            name: (
                now_counters.success_by_variant[name]
                - previous.success_by_variant.get(name, 0)
            )
            / period
            for name in self.variants
        }
        return (
            Demand(
                max(0.0, completion + growth),
                completion,
                avg_input,
                avg_output,
                gateway_arrival_rate=gateway,
            ),
            by_variant,
        )

    def observe(self) -> Observation:
        cluster = self.cluster
        now = cluster.now
        demand, completion_by_variant = self.measure_demand()
        views = []
        for name in self.variants:
            deployment = cluster.deployments[name]
            variant = deployment.variant
            replicas = []
            for pod in cluster.counted_pods(name):
                ready = pod.is_ready(now)
                peak = self.peak(pod.name) if ready else None
                phase = pod.phase(now, cluster.startup_delay_s)
                replicas.append(
                    ReplicaView(
                        pod=pod.name,
                        phase=phase,
                        ready=ready,
                        kv_cache_usage=peak[0] if peak else None,
                        num_requests_waiting=peak[1] if peak else None,
                        num_requests_running=peak[2] if peak else None,
                        in_flight_tokens=pod.engine.used_blocks,
                        pending_s=now - pod.created_at,
                        scheduled=pod.node is not None,
                    )
                )
            low, high = self.setup.bounds[name]
            views.append(
                VariantView(
                    name=name,
                    accelerator=variant.accelerator,
                    gpus_per_replica=variant.gpus_per_replica,
                    usd_per_gpu_hour=self.profiles[
                        variant.accelerator
                    ].usd_per_gpu_hour,
                    min_replicas=low,
                    max_replicas=high,
                    spec_replicas=deployment.replicas,
                    replicas=tuple(replicas),
                    kv_tokens=self.profiles[variant.accelerator].kv_tokens,
                    engine=variant.engine,
                    completion_rate=completion_by_variant.get(name, 0.0),
                )
            )
        return Observation(
            now_s=now,
            variants=tuple(views),
            free_gpus=self.free_gpus(),
            demand=demand,
            scale_events=tuple(self.events),
        )

    def free_gpus(self) -> dict[str, int]:
        free: dict[str, int] = {}
        for node in self.cluster.nodes:
            free[node.accelerator] = (
                free.get(node.accelerator, 0) + node.gpus - node.used
            )
        return free

    def control(self) -> None:
        decisions = self.policy.decide(self.observe())
        for name in self.variants:
            decision = decisions.get(name)
            if decision is None:
                continue
            low, high = self.setup.bounds[name]
            current = self.cluster.deployments[name].replicas
            target = max(0, min(high, decision.target))
            if target == current:
                continue
            if target < current and self.policy.drains:
                self.cluster.drain_to(name, target, decision.victims)
            else:
                self.cluster.scale(name, target)
            now = self.cluster.now
            self.events.append((now, name, current, target))
            if now >= WARMUP_S:
                self.tally.scale_events.append((now - WARMUP_S, name, current, target))


def _class_draw(count: int, batch_fraction: float, seed: int) -> list[int]:
    """Class index per request: 1 (batch) with probability batch_fraction, else 0."""
    rng = random.Random(f"classes:{seed}")
    return [1 if rng.random() < batch_fraction else 0 for _ in range(count)]


def _fleet_for(
    setup: FleetSetup, spec: PolicySpec, initial: dict[str, int] | None
) -> FleetSpec:
    variants = setup.spec.variants
    if spec.accelerator is not None:
        variants = tuple(v for v in variants if v.accelerator == spec.accelerator)
        if not variants:
            raise ValueError(
                f"no variant of the fleet uses accelerator {spec.accelerator!r} "
                f"(policy {spec.text!r})"
            )
    if initial is not None:
        variants = tuple(
            dataclasses.replace(v, replicas=int(initial.get(v.name, 0)))
            for v in variants
        )
    gpus = {
        a: n
        for a, n in setup.spec.gpus.items()
        if any(v.accelerator == a for v in variants)
    }
    return dataclasses.replace(setup.spec, variants=variants, gpus=gpus)


def build_policy(spec: PolicySpec, context: PolicyContext) -> Policy:
    if spec.name in ("hpa-kv", "hpa-queue"):
        targets = dict(context.hpa_targets)
        if spec.target is not None:
            targets[spec.name] = spec.target
        return HpaPolicy(spec.name, dataclasses.replace(context, hpa_targets=targets))
    if spec.name == "static-peak":
        return StaticPeakPolicy(context)
    if spec.name == "oracle":
        return OraclePolicy(context)
    if spec.name == "wva-v1":
        return WvaV1Policy(context)
    return WvaPolicy(context)


def _power_curves(path: Path) -> dict[str, PowerCurve]:
    import csv

    with path.open(newline="") as handle:
        return {
            row["accelerator"]: PowerCurve(
                float(row["power_idle_w"]),
                float(row["power_mid_w"]),
                float(row["power_full_w"]),
            )
            for row in csv.DictReader(handle)
        }


@dataclass(frozen=True)
class Workload:
    """The scaled trace of a comparison and each request's service class."""

    requests: tuple[TraceRequest, ...]
    # Service class of each measured request, after the warm-up ones.
    classes: tuple[int, ...]
    duration_s: float
    warmup_requests: int = 0

    @property
    def measured(self) -> tuple[TraceRequest, ...]:
        """Measured requests, with arrival times from the end of the warm-up."""
        return tuple(
            TraceRequest(r.arrival_s - WARMUP_S, r.prompt_tokens, r.output_tokens)
            for r in self.requests[self.warmup_requests :]
        )


def prepare_workload(options: CompareOptions, setup: FleetSetup) -> Workload:
    """Load, scale and cut the trace; the duration is --duration or the trace's span.

    The run starts `WARMUP_S` early with the last requests of the trace
    shifted before its start, as if it had looped, so every policy meets
    the first measured request with a fleet already in motion. Warm-up
    requests, cost and energy are not counted.
    """
    requests = scale_load(
        load_named_trace(options.trace, options.trace_dir),
        options.scale,
        options.scale_mode,
        options.seed,
    )
    period = trace_period_s(requests) if requests else 0.0
    span = requests[-1].arrival_s if requests else 0.0
    duration = options.duration_s if options.duration_s is not None else span
    # Past the trace's end no request arrives: a longer run would only add
    # idle time, dilute the per-second figures and, for a huge value, never end.
    duration = max(min(duration, period), SCRAPE_PERIOD_S)
    kept = [r for r in requests if r.arrival_s < duration]
    warmup = [
        TraceRequest(r.arrival_s - period + WARMUP_S, r.prompt_tokens, r.output_tokens)
        for r in requests
        if r.arrival_s >= period - WARMUP_S
    ]
    shifted = [
        TraceRequest(r.arrival_s + WARMUP_S, r.prompt_tokens, r.output_tokens)
        for r in kept
    ]
    classes = tuple(_class_draw(len(kept), setup.batch_fraction, options.seed))
    return Workload(tuple(warmup + shifted), classes, duration, len(warmup))


@dataclass(frozen=True)
class Calibration:
    """Benchmarked capacity per variant and the latency profiles fitted to it."""

    capacities: dict[str, float]
    fitted: dict[str, LatencyProfile]


def calibrate(
    options: CompareOptions, setup: FleetSetup, workload: Workload
) -> Calibration:
    """Benchmark one replica of each variant on the workload's request mix."""
    profiles = load_accelerators(options.accelerators)
    sizing = setup.sizing_class
    requests = workload.requests
    avg_input = sum(r.prompt_tokens for r in requests) / max(1, len(requests))
    avg_output = sum(r.output_tokens for r in requests) / max(1, len(requests))
    capacities: dict[str, float] = {}
    fitted: dict[str, LatencyProfile] = {}
    given = options.replica_capacity_rps or {}
    for variant in setup.spec.variants:
        profile = profiles[variant.accelerator]
        if variant.name in given:
            capacity = float(given[variant.name])
        else:
            capacity = benchmark_capacity(
                profile,
                variant.engine,
                requests,
                sizing.ttft_ms / 1000.0,
                sizing.itl_ms / 1000.0,
                options.seed,
            )
        capacities[variant.name] = capacity
        model = latency_profile(profile, variant.engine, avg_input, avg_output)
        fitted[variant.name] = fit_profile(
            model, avg_input, avg_output, sizing.ttft_ms, sizing.itl_ms, capacity
        )
    return Calibration(capacities, fitted)


def run_policy(
    spec: PolicySpec,
    options: CompareOptions,
    setup: FleetSetup,
    workload: Workload,
    calibration: Calibration,
    report: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Simulate one policy over the workload and summarise the run."""
    profiles = load_accelerators(options.accelerators)
    curves = _power_curves(options.accelerators)
    fleet = _fleet_for(setup, spec, None)
    hpa_targets = dict(DEFAULT_HPA_TARGETS)
    context = PolicyContext(
        variants=tuple(
            _static_view(setup, fleet, profiles, name) for name in _names(fleet)
        ),
        profiles=profiles,
        power=curves,
        gpus=dict(fleet.gpus),
        sizing_class=setup.sizing_class,
        startup_delay_s=options.startup_delay_s,
        control_period_s=CONTROL_PERIOD_S,
        trace=workload.requests,
        hpa_targets=hpa_targets,
    )
    context = dataclasses.replace(
        context,
        capacities=calibration.capacities,
        fitted=calibration.fitted,
    )
    policy = build_policy(spec, context)
    fleet = _fleet_for(setup, spec, policy.initial_replicas())
    cluster = CompareCluster(
        fleet,
        profiles,
        startup_delay_s=options.startup_delay_s,
        seed=options.seed,
        max_waiting=setup.max_waiting_per_replica,
        grace_s=setup.grace_s,
    )
    run = PolicyRun(policy, cluster, setup, _names(fleet))
    run.profiles = profiles
    run.curves = curves
    submitted: list[Request | None] = []
    next_scrape = 0.0
    next_control = CONTROL_PERIOD_S
    end = WARMUP_S + workload.duration_s

    def tick_until(t: float) -> None:
        nonlocal next_scrape, next_control
        while min(next_scrape, next_control) <= t:
            if next_scrape <= next_control:
                cluster.advance_to(next_scrape)
                cluster.finish_drains()
                run.scrape(counted=WARMUP_S <= next_scrape < end)
                next_scrape += SCRAPE_PERIOD_S
                if report is not None:
                    report(min(1.0, cluster.now / end))
            else:
                cluster.advance_to(next_control)
                run.control()
                next_control += CONTROL_PERIOD_S

    for index, request in enumerate(workload.requests):
        tick_until(request.arrival_s)
        cluster.advance_to(request.arrival_s)
        routed, cause = cluster.route(request.prompt_tokens, request.output_tokens)
        run.arrivals_since_scrape += 1
        if index < workload.warmup_requests:
            continue
        if routed is None:
            run.tally.reject(cause)
        submitted.append(routed)
    tick_until(end)
    tail_end = end
    while tail_end < end + TAIL_S and _in_flight(cluster):
        tail_end += SCRAPE_PERIOD_S
        cluster.advance_to(tail_end)
        cluster.finish_drains()
    result = summarise(
        submitted,
        workload.classes,
        [
            ClassTargets(c.name, c.ttft_ms / 1000.0, c.itl_ms / 1000.0)
            for c in setup.classes
        ],
        run.tally,
        workload.duration_s,
    )
    result["policy"] = spec.name
    result["accelerator"] = spec.accelerator
    result["drains"] = policy.drains
    if spec.name in DEFAULT_HPA_TARGETS:
        result["hpa_target"] = getattr(policy, "target", None)
    return result


def _names(fleet: FleetSpec) -> list[str]:
    return [v.name for v in fleet.variants]


def _in_flight(cluster: CompareCluster) -> bool:
    return any(
        pod.engine.running or pod.engine.n_waiting
        for deployment in cluster.deployments.values()
        for pod in deployment.pods
        if pod.deleted_at is None
    )


def _static_view(
    setup: FleetSetup,
    fleet: FleetSpec,
    profiles: dict[str, AcceleratorProfile],
    name: str,
) -> VariantView:
    variant = next(v for v in fleet.variants if v.name == name)
    low, high = setup.bounds[name]
    profile = profiles[variant.accelerator]
    return VariantView(
        name=name,
        accelerator=variant.accelerator,
        gpus_per_replica=variant.gpus_per_replica,
        usd_per_gpu_hour=profile.usd_per_gpu_hour,
        min_replicas=low,
        max_replicas=high,
        spec_replicas=variant.replicas,
        replicas=(),
        kv_tokens=profile.kv_tokens,
        engine=variant.engine,
        completion_rate=0.0,
    )


def run_comparison(
    options: CompareOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every policy of `options` on the same workload and return the results.

    `progress`, when given, is called with (fraction done in 0..1, message).
    Raises ValueError naming the value for invalid options.
    """
    options.validate()
    setup = load_setup(options.fleet)
    known = load_accelerators(options.accelerators)
    unknown = sorted({v.accelerator for v in setup.spec.variants} - set(known))
    if unknown:
        raise ValueError(
            f"fleet file {options.fleet}: accelerator {', '.join(unknown)} is not "
            f"in {options.accelerators}"
        )
    specs = [parse_policy(text) for text in options.policies]
    workload = prepare_workload(options, setup)
    if progress is not None:
        progress(0.0, "benchmarking one replica per variant")
    calibration = calibrate(options, setup, workload)
    results: dict[str, Any] = {}
    for index, spec in enumerate(specs):

        def report(
            fraction: float, index: int = index, spec: PolicySpec = spec
        ) -> None:
            if progress is not None:
                progress((index + fraction) / len(specs), spec.text)

        report(0.0)
        results[spec.text] = run_policy(
            spec, options, setup, workload, calibration, report
        )
    if progress is not None:
        progress(1.0, "done")
    return {
        "trace": options.trace,
        "scale": options.scale,
        "scale_mode": options.scale_mode,
        "seed": options.seed,
        "fleet": str(options.fleet),
        "duration_s": workload.duration_s,
        "requests": len(workload.classes),
        "warmup_s": WARMUP_S,
        "startup_delay_s": options.startup_delay_s,
        "scrape_period_s": SCRAPE_PERIOD_S,
        "control_period_s": CONTROL_PERIOD_S,
        "class_rule": (
            f"each request is 'batch' with probability {setup.batch_fraction} "
            f"(seeded by {options.seed}), else 'interactive'"
        ),
        "service_classes": {
            c.name: {"ttft_ms": c.ttft_ms, "itl_ms": c.itl_ms} for c in setup.classes
        },
        "replica_capacity_rps": dict(calibration.capacities),
        "policies": results,
    }


TABLE_COLUMNS = (
    ("policy", "{}"),
    ("goodput_rps", "{:.2f}"),
    ("goodput_tokens_per_s", "{:.0f}"),
    ("slo_attainment", "{:.3f}"),
    ("failed_requests", "{}"),
    ("ttft_p99_s", "{:.2f}"),
    ("itl_p99_s", "{:.3f}"),
    ("gpu_hours", "{:.2f}"),
    ("usd", "{:.2f}"),
    ("kwh", "{:.2f}"),
    ("kwh_per_1k_good_requests", "{:.3f}"),
    ("replica_changes", "{}"),
    ("reversals", "{}"),
)


def format_table(result: dict[str, Any], markdown: bool = False) -> str:
    """Render one row per policy; Markdown when asked, else aligned text."""
    rows = [[name for name, _ in TABLE_COLUMNS]]
    for policy, values in result["policies"].items():
        row = [policy]
        for key, pattern in TABLE_COLUMNS[1:]:
            value = values.get(key)
            row.append("-" if value is None else pattern.format(value))
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |"]
        lines.append("|" + "|".join(" --- " for _ in rows[0]) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )
