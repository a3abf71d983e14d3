"""The control cycle: collect, analyse, propose and actuate, once per period.

One run takes the single-cycle lease, reads every variant's workload and
pods from Kubernetes and scrapes the pods. It analyses each model with its
policy (`wva`, see `cycle_wva`, the `wva-v1` saturation policy, or the
Kubernetes HPA algorithm `hpa`, see `cycle_hpa`) and computes the HPA
counterfactual per variant.
It stores a ControlCycle row with MetricSample, Decision and
AcceleratorSample rows. Proposals go through the action functions, so
every state change writes its audit row.

Safety rules that apply under every policy run around the analysis.
`cycle_safety` flags replicas and `cycle_placement` moves scale-ups. The
analysis reads one-minute peaks. Crash-looping and silent replicas are not
capacity. Stuck queues trigger no scale-up, and a reduction next to them
needs an approver. A replica Pending past the timeout moves to another
variant, and the GPU limiter keeps scale-ups within free GPUs.
`cycle_limits` keeps pinned variants, variants in a cool-down and variants
at their HPA's maxReplicas from growing.

When a variant's workload cannot be read from Kubernetes, its model keeps
its replica counts.
That variant keeps its last published desired count with the reason
`kube_unavailable`, never 0. Its Decision row records the last known counts,
and no row is stored while no earlier cycle knew a count.

Actuation by mode: `auto` proposes and approves as the system (the
approval queues the apply task), `approval` leaves the action pending, and
`advisory` creates no action: the Decision row and
`VariantState.proposed_replicas` record the proposal, with the reason
`advisory`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from optimizer import power as power_curves
from optimizer import saturation
from optimizer.state import InputError
from wva_web.catalog.models import Accelerator, InferenceModel, Policy, Variant
from wva_web.control import (
    actions,
    cycle_demand,
    cycle_hpa,
    cycle_limits,
    cycle_log,
    cycle_placement,
    cycle_safety,
    cycle_wva,
    lock,
    readback,
    safety_actions,
)
from wva_web.control.cycle_view import VariantDecision, VariantView
from wva_web.control.models import (
    AcceleratorSample,
    ActionState,
    AuditLog,
    ControlCycle,
    CycleStatus,
    Decision,
    MetricSample,
    ScaleAction,
    VariantState,
)
from wva_web.integrations import kube, metrics
from wva_web.integrations.prometheus import metrics_source_from_settings

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Reason code of a variant whose workload could not be read from Kubernetes.
KUBE_UNAVAILABLE = "kube_unavailable"


@dataclass
class CycleRun:
    """Working state of one cycle, written to the ControlCycle row at the end."""

    cycle: ControlCycle
    now: datetime
    views: dict[int, VariantView] = field(default_factory=dict)
    decisions: dict[int, VariantDecision] = field(default_factory=dict)
    inventory: dict[str, kube.GpuCount] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    free_gpus: dict[str, dict[str, int | None]] = field(default_factory=dict)
    cool: cycle_limits.CoolDowns = field(default_factory=cycle_limits.CoolDowns)
    # Each variant's latest decision stored before this cycle, by variant id.
    previous: dict[int, cycle_log.PreviousDecision] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings_ms[name] = round((time.monotonic() - started) * 1000.0, 3)

    def error(self, phase: str, kind: str, message: str, **ids: str) -> None:
        self.errors.append({"phase": phase, "kind": kind, "message": message, **ids})


def json_safe(value: Any) -> Any:
    """Replace NaN and infinity by None, recursively, so allow_nan=False passes."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def checked_json(value: Any) -> Any:
    """Return a JSON-safe copy and check it serialises with allow_nan=False."""
    safe = json_safe(value)
    json.dumps(safe, allow_nan=False, default=str)
    return safe


class CycleService:
    """Runs control cycles; the metrics source, actuator and clock are injectable.

    With `read_only`, as on an instance that does not lead the cluster, the
    cycle collects, analyses and stores its rows, so the pages stay current,
    but proposes, approves and applies nothing and changes no variant's mode.
    `leader` names the instance that leads, for the cycle row.
    """

    def __init__(
        self,
        metrics_source: metrics.MetricsSource | None = None,
        actuator: kube.Actuator | None = None,
        clock: Clock | None = None,
        read_only: bool = False,
        leader: str = "",
    ) -> None:
        self.clock = clock or timezone.now
        self.metrics_source = metrics_source or metrics_source_from_settings(self.clock)
        # Sources that scrape pods need an address; a Prometheus source does not.
        self.needs_endpoint = bool(getattr(self.metrics_source, "needs_endpoint", True))
        self._actuator = actuator
        self.read_only = read_only
        self.leader = leader

    @property
    def actuator(self) -> kube.Actuator:
        if self._actuator is None:
            self._actuator = kube.get_actuator()
        return self._actuator

    def run(self) -> ControlCycle | None:
        """Run one cycle under the lease; return None when another cycle holds it."""
        with lock.cycle_lock() as holder:
            if holder is None:
                logger.info(
                    "control cycle skipped: the cycle lock is taken by another cycle"
                )
                return None
            return self.run_locked()

    def run_locked(self) -> ControlCycle:
        """Run one cycle; the caller holds the lease. Exceptions end as `failed`."""
        now = self.clock()
        cycle = ControlCycle.objects.create(
            started_at=now, status=CycleStatus.RUNNING, policy=settings.WVA_POLICY
        )
        run = CycleRun(cycle=cycle, now=now)
        try:
            self._run_phases(run)
        except Exception as exc:  # noqa: BLE001 - the cycle row records any failure
            logger.exception("control cycle %s failed", cycle.pk)
            run.error("cycle", type(exc).__name__, str(exc))
            self._finish(run, CycleStatus.FAILED, {})
            return cycle
        return cycle

    def _run_phases(self, run: CycleRun) -> None:
        with run.phase("expire"):
            actions.expire_actions(run.now)
            # Before the analysis, so a lost apply stops holding its model. A
            # read-only cycle runs it too: an action this instance approved
            # while it could not lead must fail, never stay approved.
            actions.fail_overdue_applies(run.now, actions.apply_deadline_s())
        with run.phase("collect"):
            self._collect(run)
        with run.phase("analyse"):
            self._analyse(run)
        status = self._status(run)
        with run.phase("store"):
            inputs = self._store(run, status)
        if self.read_only:
            logger.info(
                "control cycle %s is read-only: instance %s does not lead the "
                "cluster (leader: %s), so nothing is proposed or applied",
                run.cycle.pk,
                settings.WVA_INSTANCE,
                self.leader or "unknown",
            )
        else:
            with run.phase("propose"):
                self._propose(run)
        self._finish(run, status, inputs)

    # Collect.

    def _collect(self, run: CycleRun) -> None:
        variants = Variant.objects.select_related(
            "model", "model__service_class", "accelerator"
        ).order_by("model__name", "name")
        targets: list[metrics.ScrapeTarget] = []
        for variant in variants:
            view = self._read_variant(run, variant)
            run.views[variant.pk] = view
            targets.extend(scrape_targets(view, self.needs_endpoint))
        samples = self.metrics_source.scrape(targets)
        for view in run.views.values():
            for pod in view.live_pods:
                if pod.name in samples:
                    view.samples[pod.name] = samples[pod.name]
        for view in run.views.values():
            # A replica that is still starting may fail its scrape; only
            # ready replicas count as errors of the cycle.
            for pod in view.ready_pods:
                sample = view.samples.get(pod.name)
                if sample is None:
                    run.error(
                        "collect",
                        metrics.MISSING,
                        "no metrics endpoint: the pod has no IP or no numeric "
                        "prometheus.io/port annotation",
                        pod=pod.name,
                    )
                elif sample.status != metrics.OK:
                    kind = sample.error_kind or sample.status
                    run.error("collect", kind, sample.detail, pod=pod.name)
        run.inventory = self._read_inventory(run)
        run.previous = cycle_log.previous_decisions(run.views)
        remember_last_known(run.views.values(), run.previous)

    def _read_variant(self, run: CycleRun, variant: Variant) -> VariantView:
        view = VariantView(variant=variant)
        try:
            current = self.actuator.read_replicas(variant)
            pods = self.actuator.list_pods(variant)
            hpa_status = self.actuator.read_hpa_status(variant)
        except kube.ActuatorError as exc:
            # Nothing of the workload is used unless every read succeeded:
            # a count without its pods would read as replicas on the way.
            logger.warning("reading variant %s failed: %s", variant.name, exc)
            view.kube_error = exc.reason
            run.error("collect", exc.reason, str(exc), variant=variant.name)
            return view
        view.current, view.pods, view.hpa_status = current, pods, hpa_status
        view.hpa_name = hpa_status.name if hpa_status else None
        try:
            view.grace_period_s = self.actuator.read_grace_period(variant)
        except kube.ActuatorError as exc:
            # The grace period only feeds a warning, so the variant still scales.
            logger.warning(
                "reading the grace period of %s failed: %s", variant.name, exc
            )
        return view

    def _read_inventory(self, run: CycleRun) -> dict[str, kube.GpuCount] | None:
        namespaces = sorted({view.variant.namespace for view in run.views.values()})
        try:
            return self.actuator.gpu_inventory(namespaces=namespaces)
        except kube.ActuatorError as exc:
            logger.warning("GPU inventory is unknown: %s", exc)
            run.error("collect", "inventory_unknown", str(exc))
            return None

    # Analyse.

    def _analyse(self, run: CycleRun) -> None:
        by_model: dict[int, list[VariantView]] = {}
        for view in run.views.values():
            by_model.setdefault(view.variant.model_id, []).append(view)
        desired = in_flight_targets()
        rules = cycle_safety.SafetySettings.from_settings()
        history = cycle_safety.read_history(run.views.values(), run.now, rules)
        run.cool = cycle_limits.read_cool_downs(run.views, run.now)
        for view in run.views.values():
            cycle_safety.inspect_view(view, history, run.now, rules)
            cycle_limits.set_limits(view, run.cool, run.now)
        free, run.free_gpus = cycle_placement.free_gpus(
            run.views.values(), run.inventory
        )
        # Only a Prometheus metric source reads the gateway's rates.
        gateway_rates = getattr(self.metrics_source, "gateway_request_rates", None)
        for views in by_model.values():
            model = views[0].variant.model
            summary, decided = analyse_model(
                model, views, desired, free, run.now, gateway_rates=gateway_rates
            )
            cycle_limits.explain_limits(views, decided, run.cool)
            stuck_only = scale_up_only_from_stuck(
                model, views, desired, decided, free, run.now, gateway_rates
            )
            cycle_placement.place_model(views, decided, free, rules, stuck_only)
            for view in views:
                cycle_limits.hold_rejected(view, decided[view.variant.pk])
            run.models[model.name] = summary
            run.decisions.update(decided)
        for view in run.views.values():
            decision = run.decisions[view.variant.pk]
            run.alerts.extend(cycle_safety.flag_view(view, decision))
            apply_holds(view, decision, run.now)
            cycle_safety.name_ordinal_victim(view, decision)
            self._hpa(run, view, decision)

    def _hpa(self, run: CycleRun, view: VariantView, decision: VariantDecision) -> None:
        history = cycle_hpa.previous_hpa_history(view.variant, run.now)
        target, reasons, history = cycle_hpa.hpa_counterfactual(view, history, run.now)
        decision.hpa_target = target
        decision.hpa_reasons = reasons
        decision.hpa_history = history

    def _status(self, run: CycleRun) -> str:
        scraped = [
            sample for view in run.views.values() for sample in view.samples.values()
        ]
        if scraped and all(not sample.scraped for sample in scraped):
            return CycleStatus.METRICS_UNAVAILABLE
        if run.errors:
            return CycleStatus.PARTIAL
        return CycleStatus.OK

    # Store.

    def _store(self, run: CycleRun, status: str) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            "variants": {},
            "inventory": inventory_json(run.inventory),
            "free_gpus": run.free_gpus,
        }
        with transaction.atomic():
            for view in run.views.values():
                inputs["variants"][view.variant.name] = variant_inputs(view)
                self._store_variant(run, view, status)
                decision = run.decisions[view.variant.pk]
                current = decision_current(view, decision)
                if current is None:
                    continue
                cycle_log.log_decision(
                    view.variant.name,
                    current,
                    decision,
                    run.previous.get(view.variant.pk),
                )
            cycle_demand.store(run.cycle, run.views.values(), run.models, run.now)
            self._store_accelerators(run)
        # The gateway's inference-pool averages, when the metric source reads them.
        pools = getattr(self.metrics_source, "pools", None)
        if pools:
            inputs["inference_pools"] = pools
        gateway_rates = getattr(self.metrics_source, "gateway_request_rates", None)
        # Store only the console's models, because a shared gateway may count
        # many others.
        console_rates = {
            name: rate
            for name, rate in (gateway_rates or {}).items()
            if name in run.models
        }
        if console_rates:
            inputs["gateway_request_rates"] = console_rates
        return inputs

    def _store_variant(self, run: CycleRun, view: VariantView, status: str) -> None:
        variant = view.variant
        decision = run.decisions[variant.pk]
        if view.hpa_name:
            decision.reasons.append(f"hpa_conflict:{view.hpa_name}")
            # The leading instance changes the mode; a read-only one only reports.
            if variant.mode == Variant.Mode.AUTO and not self.read_only:
                move_to_advisory(view, run.now)
        changed = view.current is not None and decision.target != view.current
        if variant.mode == Variant.Mode.ADVISORY and changed:
            decision.reasons.append("advisory")
        pods = {pod.name: pod for pod in view.live_pods}
        MetricSample.objects.bulk_create(
            metric_sample(run, view, pods[name], sample)
            for name, sample in view.samples.items()
        )
        self._store_decision(run, view, decision)
        update_variant_state(run, view, decision, status)

    def _store_decision(
        self, run: CycleRun, view: VariantView, decision: VariantDecision
    ) -> None:
        """Create the Decision row, unless no replica count of the variant is known."""
        current = decision_current(view, decision)
        if current is None:
            # A 0 would read as an empty variant. The cycle's errors name the
            # failed read.
            logger.warning(
                "no decision stored for %s: its replica count was never read",
                view.variant.name,
            )
            return
        ready = len(view.ready_pods)
        if view.current is None and view.last_ready is not None:
            ready = view.last_ready
        analysis = dict(decision.analysis)
        analysis["hpa"] = {"recommendations": decision.hpa_history}
        row = Decision.objects.create(
            cycle=run.cycle,
            variant=view.variant,
            current_replicas=current,
            ready_replicas=ready,
            target_replicas=decision.target,
            hpa_target_replicas=decision.hpa_target,
            hpa_reasons=checked_json(decision.hpa_reasons),
            reasons=checked_json(decision.reasons),
            bound_by=decision.bound_by,
            victim_pod=decision.victim_pod,
            analysis=checked_json(analysis),
            message=decision.message,
        )
        decision.analysis["decision_id"] = row.pk

    def _store_accelerators(self, run: CycleRun) -> None:
        per_accelerator: dict[int, list[VariantView]] = {}
        for view in run.views.values():
            per_accelerator.setdefault(view.variant.accelerator_id, []).append(view)
        for accelerator in Accelerator.objects.filter(pk__in=per_accelerator):
            views = per_accelerator[accelerator.pk]
            previous = None
            if all(view.current is None for view in views):
                previous = (
                    AcceleratorSample.objects.filter(accelerator=accelerator)
                    .exclude(cycle=run.cycle)
                    .order_by("-at", "-pk")
                    .first()
                )
            totals = accelerator_totals(accelerator, views, previous)
            AcceleratorSample.objects.create(cycle=run.cycle, at=run.now, **totals)

    # Propose and actuate.

    def _propose(self, run: CycleRun) -> None:
        for view in run.views.values():
            if view.timed_out and view.current is not None:
                safety_actions.fail_unschedulable(
                    view.variant, view.current, view.timed_out, run.now
                )
            decision = run.decisions[view.variant.pk]
            if decision.held_scale_up and decision.target <= (view.current or 0):
                actions.supersede_held_scale_ups(
                    view.variant.pk, decision.held_scale_up
                )
        period_s = float(settings.WVA_CYCLE_PERIOD_S)
        actions.requeue_unapplied(run.now, older_than_s=2.0 * period_s)
        in_flight = in_flight_targets()
        for view in run.views.values():
            decision = run.decisions[view.variant.pk]
            variant = view.variant
            if view.current is None or decision.target == view.current:
                continue
            if variant.mode == Variant.Mode.ADVISORY or variant.pk in in_flight:
                continue
            try:
                self._propose_variant(view, decision)
            except (actions.ActionError, kube.ActuatorError) as exc:
                logger.warning("proposal for %s failed: %s", variant.name, exc)
                run.error("propose", type(exc).__name__, str(exc), variant=variant.name)

    def _propose_variant(self, view: VariantView, decision: VariantDecision) -> None:
        """Propose the change; in mode auto, approve it as the system and apply it."""
        variant = view.variant
        action = actions.propose_action(
            variant.pk,
            int(view.current or 0),
            decision.target,
            decision_id=decision.analysis.get("decision_id"),
            reasons=decision.reasons,
            victim_pod=decision.victim_pod,
        )
        decision.analysis["action_id"] = action.pk
        if variant.mode != Variant.Mode.AUTO or action.state != ActionState.PENDING:
            return
        if decision.needs_approval:
            logger.warning(
                "scale action %s of %s waits for an approver: %s",
                action.pk,
                variant.name,
                decision.needs_approval,
            )
            return
        try:
            actions.apply_action(action.pk, actuator=self.actuator)
        except kube.TransientActuatorError as exc:
            logger.warning(
                "applying scale action %s failed, queued for retry: %s", action.pk, exc
            )
            from wva_web.control import tasks

            tasks.apply_scale_action.apply_async((action.pk,), countdown=5)

    def _finish(self, run: CycleRun, status: str, inputs: dict[str, Any]) -> None:
        cycle = run.cycle
        cycle.finished_at = self.clock()
        cycle.status = status
        cycle.inputs = checked_json(inputs)
        outputs = cycle_outputs(run)
        if self.read_only:
            outputs = read_only_outputs(outputs, self.leader)
        cycle.outputs = checked_json(outputs)
        cycle.timings_ms = checked_json(run.timings_ms)
        cycle.errors = checked_json(run.errors)
        # The policies the models actually ran, e.g. "hpa,wva"; the default
        # when no model was analysed.
        used = sorted(
            {cycle_wva.model_policy(view.variant.model) for view in run.views.values()}
        )
        if used:
            cycle.policy = ",".join(used)[:16]
        cycle.save(
            update_fields=[
                "finished_at",
                "status",
                "policy",
                "inputs",
                "outputs",
                "timings_ms",
                "errors",
            ]
        )
        logger.info(
            "control cycle %s finished: %s, %d variants, %d errors",
            cycle.pk,
            status,
            len(run.views),
            len(run.errors),
        )


def scrape_targets(
    view: VariantView, needs_endpoint: bool = True
) -> list[metrics.ScrapeTarget]:
    """Return the Running, non-terminating pods to read metrics of.

    A source that scrapes pods needs each pod's IP and numeric
    `prometheus.io/port` annotation. A source that queries Prometheus finds
    the series by namespace and pod name, so it needs neither.
    """
    return [
        metrics.ScrapeTarget(
            pod.name,
            pod.pod_ip or "",
            pod.metrics_port or 0,
            pod.metrics_path,
            ready=pod.ready,
            namespace=view.variant.namespace,
        )
        for pod in view.live_pods
        if pod.phase == "Running"
        and (not needs_endpoint or (pod.pod_ip and pod.metrics_port))
    ]


def run_cycle(**kwargs: Any) -> ControlCycle | None:
    """Run one control cycle; keyword arguments go to CycleService."""
    return CycleService(**kwargs).run()


# Analysis helpers.


def in_flight_targets() -> dict[int, int]:
    """Targets of approved or overridden actions not yet applied, by variant id."""
    states = (ActionState.APPROVED, ActionState.OVERRIDDEN)
    targets: dict[int, int] = {}
    for action in ScaleAction.objects.filter(state__in=states).order_by("created_at"):
        targets[action.variant_id] = action.effective_replicas
    return targets


def replica_samples(
    view: VariantView, excluded: frozenset[str] = frozenset()
) -> tuple[saturation.ReplicaSample, ...]:
    """Build one ReplicaSample per pod, with one-minute peaks of KV usage and queue.

    A value that was not read as valid is None. Pods in `excluded` are left out.
    """
    replicas = []
    for pod in view.pods:
        if pod.name in excluded:
            continue
        sample = view.samples.get(pod.name)
        values: dict[str, float | None] = dict.fromkeys(
            ("kv_cache_usage", "num_requests_waiting", "num_requests_running")
        )
        if sample is not None:
            for name in values:
                if sample.field_status.get(name) == metrics.OK:
                    values[name] = getattr(sample, name)
            values.update(view.peaks.get(pod.name, {}))
        replicas.append(
            saturation.ReplicaSample(
                pod.name,
                kv_cache_usage=values["kv_cache_usage"],
                num_requests_waiting=values["num_requests_waiting"],
                num_requests_running=values["num_requests_running"],
                phase=pod.phase,
                ready=pod.ready,
                terminating=pod.terminating,
            )
        )
    return tuple(replicas)


def variant_input(
    view: VariantView, desired: int | None, extra_excluded: frozenset[str] = frozenset()
) -> saturation.VariantInput:
    """Build the `wva-v1` input; pods that are not capacity are left out."""
    variant = view.variant
    current = int(view.current or 0)
    excluded = frozenset(view.not_capacity) | extra_excluded
    # The effective max: a variant that may not grow enters with max = current.
    maximum = view.max_replicas
    return saturation.VariantInput(
        name=variant.name,
        usd_per_replica_hour=variant.usd_per_replica_hour,
        current_replicas=current,
        ready_replicas=sum(1 for pod in view.ready_pods if pod.name not in excluded),
        min_replicas=min(variant.min_replicas, maximum),
        max_replicas=maximum,
        replicas=replica_samples(view, excluded),
        # Pending pods, plus replicas of spec.replicas without a pod object yet.
        pending_replicas=sum(1 for pod in view.live_pods if pod.pending)
        + max(0, current - len(view.live_pods)),
        desired_replicas=desired,
    )


def saturation_config(model: InferenceModel) -> saturation.SaturationConfig:
    return saturation.SaturationConfig(
        kv_cache_threshold=model.kv_cache_threshold,
        queue_length_threshold=model.queue_length_threshold,
        kv_spare_trigger=model.kv_spare_trigger,
        queue_spare_trigger=model.queue_spare_trigger,
    )


def hold(
    view: VariantView, reasons: list[str], bound_by: str, message: str = ""
) -> VariantDecision:
    """Build a decision that keeps the current count.

    When the workload could not be read, the decision keeps the last
    published desired count (else the last read count) with the reason
    `kube_unavailable`, never 0. With neither known it is marked unknown.
    """
    if view.current is not None:
        return VariantDecision(
            target=view.current, reasons=reasons, bound_by=bound_by, message=message
        )
    held = held_count(view)
    return VariantDecision(
        target=held if held is not None else 0,
        reasons=[KUBE_UNAVAILABLE, *reasons],
        bound_by=bound_by,
        message=message or kube_unavailable_message(view, held),
        known=held is not None,
    )


def held_count(view: VariantView) -> int | None:
    """Return the count a variant whose workload could not be read keeps."""
    if view.last_desired is not None:
        return view.last_desired
    return view.last_current


def kube_unavailable_message(view: VariantView, held: int | None) -> str:
    reason = view.kube_error or "error"
    if held is None:
        return f"replica count unknown: reading the workload failed ({reason})"
    return (
        f"replica count unknown: reading the workload failed ({reason}), "
        f"so the variant holds at its last desired count {held}"
    )


def remember_last_known(
    views: Iterable[VariantView], previous: dict[int, cycle_log.PreviousDecision]
) -> None:
    """Set the last known counts on the views whose workload could not be read."""
    unread = {view.variant.pk: view for view in views if view.current is None}
    if not unread:
        return
    desired = VariantState.objects.filter(variant_id__in=list(unread)).values_list(
        "variant_id", "desired_replicas"
    )
    for variant_id, count in desired:
        unread[variant_id].last_desired = count
    for variant_id, view in unread.items():
        last = previous.get(variant_id)
        if last is not None:
            view.last_current = last.current
            view.last_ready = last.ready


def decision_current(view: VariantView, decision: VariantDecision) -> int | None:
    """Return the current count a Decision row records, or None to store none."""
    if view.current is not None:
        return view.current
    if view.last_current is not None:
        return view.last_current
    return decision.target if decision.known else None


def analyse_model_views(
    model: InferenceModel,
    views: list[VariantView],
    desired: dict[int, int],
    extra_excluded: frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], dict[int, VariantDecision]]:
    """Run `wva-v1` over all variants of one model.

    When a variant's workload could not be read, the whole model holds:
    its replica counts are unknown, so no decision can be balanced. Pods in
    `extra_excluded` are left out like pods that are not capacity.
    """
    failed = [view.variant.name for view in views if view.current is None]
    if failed:
        reasons = [f"kube_error:{name}" for name in failed]
        decided = {
            view.variant.pk: hold(view, reasons, "missing_data") for view in views
        }
        return {"reasons": reasons}, decided
    inputs = tuple(
        variant_input(view, desired.get(view.variant.pk), extra_excluded)
        for view in views
    )
    analysis = saturation.analyse_model(inputs, saturation_config(model))
    summary = {
        "spare_kv": analysis.spare_kv,
        "spare_queue": analysis.spare_queue,
        "saturated": list(analysis.saturated),
        "not_reporting": list(analysis.not_reporting),
        "pending": list(analysis.pending),
        "reasons": list(analysis.reasons),
        "scale_down_check": _plain(analysis.scale_down_check),
    }
    decided: dict[int, VariantDecision] = {}
    for view, result in zip(views, analysis.decisions, strict=True):
        decided[view.variant.pk] = VariantDecision(
            target=int(result.target_replicas),
            reasons=list(result.reasons),
            bound_by=result.bound_by,
            victim_pod=result.victim_pod or "",
            message=result.message,
            analysis={"model": summary},
        )
    return summary, decided


def analyse_model(
    model: InferenceModel,
    views: list[VariantView],
    desired: dict[int, int],
    free: cycle_placement.FreeGpus,
    now: datetime,
    extra_excluded: frozenset[str] = frozenset(),
    gateway_rates: Mapping[str, float] | None = None,
) -> tuple[dict[str, Any], dict[int, VariantDecision]]:
    """Run the model's policy: `wva`, `hpa` or `wva-v1`.

    Every decision records its policy in `analysis["policy"]` and the
    one-minute peaks of its pods in `analysis["peaks"]`. Under `wva` or
    `wva-v1`, a model with a workload that could not be read keeps its
    counts. Under `hpa` only that variant keeps its count, because each
    HPA scales its own workload. `gateway_rates` contains the gateway's
    request rate by model name, which `wva` observes when it is above the
    pods' rate.
    """
    policy = cycle_wva.model_policy(model)
    summary, decided = run_policy(
        policy, model, views, desired, free, now, extra_excluded, gateway_rates
    )
    summary.setdefault("policy", policy)
    slo_totals(summary, views, decided)
    if policy == Policy.WVA:
        hold_full_accelerators(views, decided)
    for view in views:
        analysis = decided[view.variant.pk].analysis
        analysis.setdefault("policy", policy)
        analysis["peaks"] = {
            pod: dict(peak)
            for pod, peak in sorted(view.peaks.items())
            if pod not in extra_excluded
        }
    return summary, decided


def run_policy(
    policy: str,
    model: InferenceModel,
    views: list[VariantView],
    desired: dict[int, int],
    free: cycle_placement.FreeGpus,
    now: datetime,
    extra_excluded: frozenset[str],
    gateway_rates: Mapping[str, float] | None = None,
) -> tuple[dict[str, Any], dict[int, VariantDecision]]:
    if policy == Policy.HPA:
        return analyse_model_hpa(views, now, extra_excluded)
    readable = all(view.current is not None for view in views)
    if policy == Policy.WVA and readable:
        try:
            return cycle_wva.analyse_model_wva(
                model, views, desired, free, now, extra_excluded, gateway_rates
            )
        except InputError as exc:
            # An invalid state stops only this model's changes, not the cycle.
            logger.error("wva input for model %s is invalid: %s", model.name, exc)
            reasons = [f"invalid_input:{exc}"]
            decided = {
                view.variant.pk: hold(view, reasons, "missing_data") for view in views
            }
            return {"reasons": reasons}, decided
    return analyse_model_views(model, views, desired, extra_excluded)


def hold_full_accelerators(
    views: list[VariantView], decided: dict[int, VariantDecision]
) -> None:
    """Mark variants that `wva` did not grow because their GPU type is full.

    `wva` places scale-ups within free GPUs itself, so the GPU limiter of
    `cycle_placement` never stops them. Marking the variant lets the cycle
    supersede its older pending scale-ups, which could not be scheduled.
    """
    codes = {
        code
        for decision in decided.values()
        for code in decision.reasons
        if code.startswith("no_free_gpu:")
    }
    for view in views:
        decision = decided[view.variant.pk]
        code = cycle_safety.no_free_gpu(view.variant.accelerator.name)
        if code not in codes or view.current is None:
            continue
        if decision.target <= view.current and not decision.held_scale_up:
            decision.held_scale_up = code


def slo_totals(
    summary: dict[str, Any],
    views: list[VariantView],
    decided: dict[int, VariantDecision],
) -> None:
    """Add the model's SLO supply and spare capacity (requests/s) to `summary`.

    Supply is each sized variant's capacity per replica times its current
    replicas; spare is supply minus the required capacity, at least 0. Only
    the `wva` SLO path records a required capacity (`required_rps`).
    """
    required = summary.get("required_rps")
    if required is None:
        return
    supply = 0.0
    for view in views:
        capacity = (
            decided[view.variant.pk].analysis.get("inputs", {}).get("capacity_rps")
        )
        if capacity is not None and view.current is not None:
            supply += float(capacity) * view.current
    summary["supply_rps"] = supply
    summary["spare_rps"] = max(0.0, supply - float(required))


def analyse_model_hpa(
    views: list[VariantView], now: datetime, extra_excluded: frozenset[str]
) -> tuple[dict[str, Any], dict[int, VariantDecision]]:
    """Run the HPA algorithm on each variant of one model, see `cycle_hpa`.

    A reduction removes the ready replica with the fewest in-flight tokens,
    as under `wva-v1`.
    """
    summary: dict[str, Any] = {"policy": Policy.HPA.value, "reasons": []}
    decided: dict[int, VariantDecision] = {}
    for view in views:
        if view.current is None:
            reasons = [f"kube_error:{view.variant.name}"]
            decision = hold(view, reasons, "missing_data")
        else:
            decision = cycle_hpa.decide_hpa(view, now, extra_excluded)
        if view.current is not None and decision.target < view.current:
            replicas = variant_input(view, None, extra_excluded)
            decision.victim_pod = saturation.choose_victim(replicas) or ""
        decision.analysis["policy"] = Policy.HPA.value
        decision.analysis["model"] = summary
        decided[view.variant.pk] = decision
    return summary, decided


def scale_up_only_from_stuck(
    model: InferenceModel,
    views: list[VariantView],
    desired: dict[int, int],
    decided: dict[int, VariantDecision],
    free: cycle_placement.FreeGpus,
    now: datetime,
    gateway_rates: Mapping[str, float] | None = None,
) -> bool:
    """Tell whether the model's scale-up disappears without its stuck replicas.

    New replicas do not drain queues that are stuck, so such a scale-up is
    not proposed.
    """
    stuck = frozenset(name for view in views for name in view.stuck)
    growing = any(
        view.current is not None and decided[view.variant.pk].target > view.current
        for view in views
    )
    if not stuck or not growing:
        return False
    _, without = analyse_model(model, views, desired, free, now, stuck, gateway_rates)
    return not any(
        view.current is not None and without[view.variant.pk].target > view.current
        for view in views
    )


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def apply_holds(view: VariantView, decision: VariantDecision, now: datetime) -> None:
    """Hold pinned variants, and never reduce a variant on invalid data."""
    variant = view.variant
    current = view.current
    if current is None:
        return
    if variant.pinned_until is not None and variant.pinned_until > now:
        decision.target = current
        decision.victim_pod = ""
        decision.bound_by = "pinned"
        cycle_safety.add_reason(decision, "pinned")
        decision.message = (
            f"pinned until {cycle_limits.minute_utc(variant.pinned_until)}"
        )
        return
    invalid = view.invalid_pods()
    if decision.target < current and invalid:
        decision.target = current
        decision.victim_pod = ""
        decision.bound_by = "missing_data"
        decision.reasons.append("missing_metrics:" + ",".join(invalid))


# Storage helpers.


def inventory_json(inventory: dict[str, kube.GpuCount] | None) -> dict[str, Any] | None:
    if inventory is None:
        return None
    return {
        name: {
            "allocatable": count.allocatable,
            "requested": count.requested,
            "free": count.free,
        }
        for name, count in sorted(inventory.items())
    }


def variant_inputs(view: VariantView) -> dict[str, Any]:
    return {
        "current_replicas": view.current,
        "ready_replicas": len(view.ready_pods),
        "kube_error": view.kube_error,
        "hpa": view.hpa_name,
        "pods": [
            {
                "name": pod.name,
                "phase": pod.phase,
                "ready": pod.ready,
                "terminating": pod.terminating,
                "deletion_cost": pod.deletion_cost,
                "sample": view.samples[pod.name].as_json()
                if pod.name in view.samples
                else None,
                "peak": view.peaks.get(pod.name),
                "flags": pod_flags(view, pod.name),
            }
            for pod in view.pods
        ],
    }


def pod_flags(view: VariantView, name: str) -> list[str]:
    """Reason codes of the safety rules that flagged the pod."""
    flags = {
        cycle_safety.CRASH_LOOP: view.crash_looping,
        cycle_safety.SILENT_REPLICA: view.silent,
        cycle_safety.STUCK_QUEUE: view.stuck,
        cycle_safety.UNSCHEDULABLE: view.timed_out,
    }
    return [code for code, names in flags.items() if name in names]


def metric_sample(
    run: CycleRun, view: VariantView, pod: kube.PodInfo, sample: metrics.PodMetrics
) -> MetricSample:
    """Build a MetricSample row; values not read as valid are stored as null."""
    values = {
        name: getattr(sample, name) if sample.field_status.get(name) == "ok" else None
        for name in metrics.FIELDS
    }
    flags = {
        name: status for name, status in sample.field_status.items() if status != "ok"
    }
    detail = sample.detail
    if flags:
        detail = (detail + " " if detail else "") + json.dumps(flags, sort_keys=True)
    return MetricSample(
        cycle=run.cycle,
        variant=view.variant,
        pod=pod.name,
        phase=pod.phase,
        ready=pod.ready,
        sampled_at=sample.sampled_at,
        status=sample.status,
        detail=detail,
        **values,
    )


def condition(
    kind: str,
    status: bool | str,
    reason: str,
    message: str,
    previous: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """Build an HPA-style condition that keeps `since` while status and reason stay.

    `status` is a bool, or a string such as "Unknown" stored as it is.
    """
    if isinstance(status, str):
        text = status
    else:
        text = "True" if status else "False"
    since = now.isoformat()
    for old in previous:
        if (
            old.get("type") == kind
            and old.get("status") == text
            and old.get("reason") == reason
        ):
            since = str(old.get("since") or since)
    return {
        "type": kind,
        "status": text,
        "reason": reason,
        "message": message,
        "since": since,
    }


def metrics_condition(view: VariantView, status: str) -> tuple[bool, str, str]:
    if view.kube_error:
        return False, "kube_error", f"reading the workload failed: {view.kube_error}"
    if status == CycleStatus.METRICS_UNAVAILABLE:
        return False, "metrics_unavailable", "every metrics scrape failed in this cycle"
    invalid = view.invalid_pods()
    if not invalid:
        return (
            True,
            "metrics_ok",
            "every ready replica reports KV-cache usage and queue",
        )
    first = view.samples.get(invalid[0])
    reason = first.status if first is not None else metrics.MISSING
    ready = len(view.ready_pods)
    names = ", ".join(invalid)
    return (
        False,
        reason,
        f"{len(invalid)} of {ready} ready replicas without valid metrics: {names}",
    )


def scaling_conditions(
    view: VariantView, decision: VariantDecision
) -> tuple[tuple[bool, str, str], tuple[bool, str, str]]:
    """AbleToScale and ScalingLimited as (status, reason, message)."""
    if view.hpa_name:
        able = (False, "hpa_conflict", f"HPA {view.hpa_name} targets this workload")
    elif decision.bound_by == "pinned":
        able = (False, "pinned", decision.message)
    elif view.kube_error:
        able = (False, "kube_error", view.kube_error)
    elif decision.bound_by in ("transition", "missing_data"):
        able = (False, decision.bound_by, ", ".join(decision.reasons))
    else:
        able = (True, "ready", "")
    caps = {
        "max_replicas": "capped_by_max",
        "min_replicas": "capped_by_min",
        "gpu_budget": "gpu_budget",
        "hpa_max_replicas": cycle_limits.CAPPED_BY_HPA_MAX,
        cycle_limits.UNSCHEDULABLE_RECENTLY: cycle_limits.UNSCHEDULABLE_RECENTLY,
        cycle_limits.REJECTED_RECENTLY: cycle_limits.REJECTED_RECENTLY,
    }
    if decision.bound_by in caps:
        limited = (True, caps[decision.bound_by], decision.message)
    else:
        limited = (False, "within_bounds", "")
    return able, limited


def update_variant_state(
    run: CycleRun, view: VariantView, decision: VariantDecision, status: str
) -> None:
    variant = view.variant
    state, _ = VariantState.objects.get_or_create(
        variant=variant, defaults={"updated_at": run.now}
    )
    previous = list(state.conditions or [])
    metrics_ok = metrics_condition(view, status)
    able, limited = scaling_conditions(view, decision)
    conditions = [
        condition("MetricsAvailable", *metrics_ok, previous, run.now),
        condition("AbleToScale", *able, previous, run.now),
        condition("ScalingLimited", *limited, previous, run.now),
    ]
    for extra in decision.conditions:
        details = {
            key: value
            for key, value in extra.items()
            if key not in ("type", "status", "reason", "message")
        }
        item = condition(
            extra["type"],
            extra["status"],
            extra["reason"],
            extra["message"],
            previous,
            run.now,
        )
        conditions.append({**item, **details})
    samples = [
        view.samples[pod.name] for pod in view.ready_pods if pod.name in view.samples
    ]
    kv = [
        s.kv_cache_usage
        for s in samples
        if s.field_status.get("kv_cache_usage") == "ok"
    ]
    waiting = [
        s.num_requests_waiting
        for s in samples
        if s.field_status.get("num_requests_waiting") == "ok"
    ]
    state.updated_at = run.now
    state.last_cycle = run.cycle
    state.current_replicas = view.current
    state.ready_replicas = len(view.ready_pods) if view.current is not None else None
    state.pending_replicas = len(view.pending_pods)
    if decision.known:
        state.proposed_replicas = decision.target
    state.hpa_target_replicas = decision.hpa_target
    if view.current is not None:
        previous_desired = state.desired_replicas
        state.desired_replicas = decision.target
        if decision.bound_by == "missing_data" and previous_desired is not None:
            # Missing data keeps the last good decision, so an HPA or KEDA
            # reading wva_desired_replicas keeps it. The hold never publishes
            # fewer replicas than run now.
            state.desired_replicas = max(decision.target, previous_desired)
        readback.record_readback(state, previous_desired, view.hpa_status, run.now)
    # NOTE: with the workload unreadable, the desired count, its publication
    # time and the HPA read-back keep their last good values.
    state.mean_kv_cache_usage = sum(kv) / len(kv) if kv else None
    state.total_waiting = sum(w for w in waiting if w is not None) if waiting else None
    state.conditions = checked_json(conditions)
    state.missing_kv_cycles = state.missing_kv_cycles + 1 if view.kv_missing() else 0
    state.degraded = not metrics_ok[0]
    state.save()


def accelerator_totals(
    accelerator: Accelerator,
    views: list[VariantView],
    previous: AcceleratorSample | None = None,
) -> dict[str, Any]:
    """Return replicas, GPUs, mean KV usage, power and cost of one accelerator type.

    A variant whose workload could not be read counts with its last known
    replicas and ready replicas, never as 0. When no variant of the type was
    read, the power is carried from `previous`, the type's last sample.
    """
    curve = power_curves.PowerCurve(
        accelerator.power_idle_w, accelerator.power_mid_w, accelerator.power_full_w
    )
    replicas = ready = gpus = 0
    kv_values: list[float] = []
    starting: list[tuple[int, bool, float | None]] = []
    for view in views:
        gpus_per_replica = view.variant.gpus_per_replica
        # An unreadable workload counts with its last known replicas, not 0.
        count = view.current if view.current is not None else (view.last_current or 0)
        replicas += count
        gpus += count * gpus_per_replica
        if view.current is None:
            last_ready = min(view.last_ready or 0, count)
            ready += last_ready
            # Estimated below at the type's mean KV usage.
            starting.extend((gpus_per_replica, False, None) for _ in range(last_ready))
            starting.extend(
                (gpus_per_replica, True, None) for _ in range(count - last_ready)
            )
            continue
        ready += len(view.ready_pods)
        for pod in view.live_pods:
            sample = view.samples.get(pod.name)
            kv = None
            if sample is not None and sample.field_status.get("kv_cache_usage") == "ok":
                kv = sample.kv_cache_usage
                if pod.ready and kv is not None:
                    kv_values.append(kv)
            starting.append((gpus_per_replica, not pod.ready, kv))
    utilisation = sum(kv_values) / len(kv_values) if kv_values else None
    power = 0.0
    for gpus_per_replica, is_starting, kv in starting:
        # NOTE: a replica without a KV sample is assumed at the type's mean usage.
        level = kv if kv is not None else (utilisation or 0.0)
        power += power_curves.replica_power_w(
            curve, level, gpus_per_replica=gpus_per_replica, starting=is_starting
        )
    if previous is not None:
        power = previous.power_w
    return {
        "accelerator": accelerator,
        "replicas": replicas,
        "ready_replicas": ready,
        "gpus_used": gpus,
        "utilisation": utilisation,
        "power_w": power,
        "usd_per_hour": gpus * accelerator.usd_per_gpu_hour,
    }


def cycle_outputs(run: CycleRun) -> dict[str, Any]:
    variants = {}
    for view in run.views.values():
        decision = run.decisions.get(view.variant.pk)
        if decision is None:
            continue
        variants[view.variant.name] = {
            "current_replicas": view.current,
            "target_replicas": decision.target if decision.known else None,
            "reasons": decision.reasons,
            "bound_by": decision.bound_by,
            "victim_pod": decision.victim_pod,
            "message": decision.message,
            "hpa_target_replicas": decision.hpa_target,
            "hpa_reasons": decision.hpa_reasons,
            "hpa_recommendations": decision.hpa_history,
            "action_id": decision.analysis.get("action_id"),
        }
    return {"models": run.models, "variants": variants, "alerts": run.alerts}


def read_only_outputs(outputs: dict[str, Any], leader: str) -> dict[str, Any]:
    """Mark the outputs of a cycle that proposed and applied nothing."""
    return {**outputs, "read_only": True, "leader": leader}


def move_to_advisory(view: VariantView, now: datetime) -> None:
    """Switch an `auto` variant that an HPA targets to `advisory`, with an audit row."""
    variant = view.variant
    changed = Variant.objects.filter(pk=variant.pk, mode=Variant.Mode.AUTO).update(
        mode=Variant.Mode.ADVISORY
    )
    if changed != 1:
        return
    variant.mode = Variant.Mode.ADVISORY
    message = (
        f"HPA {view.hpa_name} targets {variant.kind} {variant.namespace}/"
        f"{variant.workload_name}; mode auto changed to advisory at "
        f"{cycle_limits.minute_utc(now)}"
    )
    AuditLog.objects.create(
        at=now,
        actor=None,
        verb="set_mode",
        object_type="variant",
        object_id=str(variant.pk),
        before={"mode": Variant.Mode.AUTO},
        after={"mode": Variant.Mode.ADVISORY, "hpa": view.hpa_name},
        message=message,
    )
    logger.warning("variant %s: %s", variant.name, message)
