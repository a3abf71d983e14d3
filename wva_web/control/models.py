"""Control records: cycles, samples, decisions, scale actions, audit rows.

State changes of a scale action are conditional UPDATEs done by the action
functions in `wva_web.control.actions`; nothing else writes `state`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from wva_web.catalog.models import Accelerator, InferenceModel, Variant


class CycleStatus(models.TextChoices):
    RUNNING = "running", "running"
    OK = "ok", "ok"
    PARTIAL = "partial", "partial: some replicas or queries failed"
    METRICS_UNAVAILABLE = "metrics_unavailable", "metrics unavailable"
    FAILED = "failed", "failed"


class ControlCycle(models.Model):
    """One run of collect, analyse, optimise, propose and actuate."""

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=24, choices=CycleStatus.choices, default=CycleStatus.RUNNING
    )
    policy = models.CharField(max_length=16)
    # JSON written with allow_nan=False: a non-finite value is stored as null
    # with a flag, never as NaN.
    inputs = models.JSONField(default=dict)
    outputs = models.JSONField(default=dict)
    timings_ms = models.JSONField(default=dict)
    errors = models.JSONField(default=list)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"cycle {self.pk} at {self.started_at:%H:%M:%S} ({self.status})"


class SampleStatus(models.TextChoices):
    OK = "ok", "ok"
    MISSING = "missing", "missing"
    STALE = "stale", "stale"
    NON_FINITE = "non_finite", "non-finite value"
    OUT_OF_RANGE = "out_of_range", "out of range"
    NOT_NUMERIC = "not_numeric", "not numeric"
    KV_METRIC_NOT_FOUND = "kv_metric_not_found", "KV-cache metric not found"


class MetricSample(models.Model):
    """One replica's metrics as one cycle read them.

    A value that was missing, non-numeric, non-finite or out of range is
    null, and `status` gives the reason; it is never stored as zero.
    """

    cycle = models.ForeignKey(
        ControlCycle, on_delete=models.CASCADE, related_name="samples"
    )
    variant = models.ForeignKey(
        Variant, on_delete=models.CASCADE, related_name="samples"
    )
    pod = models.CharField(max_length=253)
    phase = models.CharField(max_length=16, default="Running")
    ready = models.BooleanField(default=True)
    sampled_at = models.DateTimeField(db_index=True)
    kv_cache_usage = models.FloatField(null=True, blank=True)
    num_requests_waiting = models.FloatField(null=True, blank=True)
    num_requests_running = models.FloatField(null=True, blank=True)
    prompt_tokens_total = models.FloatField(null=True, blank=True)
    generation_tokens_total = models.FloatField(null=True, blank=True)
    # Finished requests, and sum and count of the per-request prompt and
    # generation token histograms. They count from the engine's start.
    request_success_total = models.FloatField(null=True, blank=True)
    request_prompt_tokens_sum = models.FloatField(null=True, blank=True)
    request_prompt_tokens_count = models.FloatField(null=True, blank=True)
    request_generation_tokens_sum = models.FloatField(null=True, blank=True)
    request_generation_tokens_count = models.FloatField(null=True, blank=True)
    status = models.CharField(
        max_length=24, choices=SampleStatus.choices, default=SampleStatus.OK
    )
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-sampled_at", "pod"]
        indexes = [models.Index(fields=["variant", "-sampled_at"])]

    def __str__(self) -> str:
        return f"{self.pod} at {self.sampled_at:%H:%M:%S} ({self.status})"


class DemandSample(models.Model):
    """One model's request demand as one cycle measured it, with the forecast.

    Rates are requests/s over the interval since the pods' previous samples.
    With `known` false the demand could not be measured and `reason` gives
    the cause. Every rate is then null and the cycle sent no demand.
    """

    cycle = models.ForeignKey(
        ControlCycle, on_delete=models.CASCADE, related_name="demand_samples"
    )
    model = models.ForeignKey(
        InferenceModel, on_delete=models.CASCADE, related_name="demand_samples"
    )
    at = models.DateTimeField(db_index=True)
    known = models.BooleanField(default=False)
    reason = models.CharField(max_length=255, blank=True)
    interval_s = models.FloatField(null=True, blank=True)
    completion_rate = models.FloatField(null=True, blank=True)
    # Completion rate plus the growth of waiting and running requests.
    arrival_rate = models.FloatField(null=True, blank=True)
    avg_input_tokens = models.FloatField(null=True, blank=True)
    avg_output_tokens = models.FloatField(null=True, blank=True)
    # True when no request finished in the interval.
    idle = models.BooleanField(default=False)
    # Arrival rate projected one start-up delay ahead, its trend in
    # requests/s per second, and the rate sent to the policy:
    # max(arrival_rate, forecast_rate).
    forecast_rate = models.FloatField(null=True, blank=True)
    trend_per_s = models.FloatField(null=True, blank=True)
    sent_arrival_rate = models.FloatField(null=True, blank=True)
    # Pods whose counters went back (a restart), left out of the rates.
    reset_pods = models.JSONField(default=list)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["model", "-at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["cycle", "model"], name="one_demand_sample_per_cycle"
            )
        ]

    def __str__(self) -> str:
        return f"demand of {self.model} at {self.at:%H:%M:%S}"


class AcceleratorSample(models.Model):
    """Per-accelerator totals at the end of one cycle, for the overview charts."""

    cycle = models.ForeignKey(
        ControlCycle, on_delete=models.CASCADE, related_name="accelerator_samples"
    )
    accelerator = models.ForeignKey(
        Accelerator, on_delete=models.CASCADE, related_name="samples"
    )
    at = models.DateTimeField(db_index=True)
    replicas = models.PositiveIntegerField()
    ready_replicas = models.PositiveIntegerField()
    gpus_used = models.PositiveIntegerField()
    # Mean KV-cache usage over reporting replicas (0 to 1); null with none.
    utilisation = models.FloatField(null=True, blank=True)
    power_w = models.FloatField()
    usd_per_hour = models.FloatField()

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.accelerator} at {self.at:%H:%M:%S}"


class Decision(models.Model):
    """One cycle's decision for one variant, with its reasons."""

    cycle = models.ForeignKey(
        ControlCycle, on_delete=models.CASCADE, related_name="decisions"
    )
    variant = models.ForeignKey(
        Variant, on_delete=models.CASCADE, related_name="decisions"
    )
    current_replicas = models.PositiveIntegerField()
    ready_replicas = models.PositiveIntegerField()
    target_replicas = models.PositiveIntegerField()
    # What the Kubernetes HPA would have done; null when it cannot be known.
    hpa_target_replicas = models.PositiveIntegerField(null=True, blank=True)
    hpa_reasons = models.JSONField(default=list)
    # Reason codes, e.g. "scale_up:avg_spare_kv", "missing_metrics:pod-1".
    reasons = models.JSONField(default=list)
    # The constraint that bound the target: max_replicas, min_replicas,
    # gpu_budget, missing_data, transition, pinned, or empty.
    bound_by = models.CharField(max_length=32, blank=True)
    victim_pod = models.CharField(max_length=253, blank=True)
    analysis = models.JSONField(default=dict)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-cycle__started_at", "variant__name"]

    def __str__(self) -> str:
        return f"{self.variant} {self.current_replicas}->{self.target_replicas}"


class ActionState(models.TextChoices):
    PENDING = "pending", "pending"
    APPROVED = "approved", "approved"
    REJECTED = "rejected", "rejected"
    OVERRIDDEN = "overridden", "overridden"
    APPLIED = "applied", "applied"
    FAILED = "failed", "failed"
    SUPERSEDED = "superseded", "superseded"
    EXPIRED = "expired", "expired"


OPEN_STATES = (ActionState.PENDING, ActionState.APPROVED, ActionState.OVERRIDDEN)


class ScaleAction(models.Model):
    """A change of one variant's replicas from `from_replicas` to `to_replicas`."""

    variant = models.ForeignKey(
        Variant, on_delete=models.CASCADE, related_name="actions"
    )
    decision = models.ForeignKey(
        Decision,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="actions",
    )
    created_at = models.DateTimeField(db_index=True)
    from_replicas = models.PositiveIntegerField()
    to_replicas = models.PositiveIntegerField()
    state = models.CharField(
        max_length=16,
        choices=ActionState.choices,
        default=ActionState.PENDING,
        db_index=True,
    )
    # Null requester: the control cycle proposed it.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="requested_actions",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="decided_actions",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # Override: the replica count an approver chose instead, and how long it
    # pins the variant (null: until the next decision).
    override_replicas = models.PositiveIntegerField(null=True, blank=True)
    override_until = models.DateTimeField(null=True, blank=True)
    victim_pod = models.CharField(max_length=253, blank=True)
    reasons = models.JSONField(default=list)
    applied_at = models.DateTimeField(null=True, blank=True)
    # Failure or supersede reason code, e.g. base_changed, and its message.
    failure_reason = models.CharField(max_length=32, blank=True)
    message = models.TextField(blank=True)
    dry_run = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["variant", "state"])]

    def __str__(self) -> str:
        change = f"{self.from_replicas}->{self.to_replicas}"
        return f"{self.variant.name} {change} ({self.state})"

    @property
    def effective_replicas(self) -> int:
        if self.override_replicas is not None:
            return self.override_replicas
        return self.to_replicas

    @property
    def usd_per_hour_change(self) -> float:
        per_replica = self.variant.usd_per_replica_hour
        return (self.effective_replicas - self.from_replicas) * per_replica


class AuditLog(models.Model):
    """Audit record of one change: actor, object, time, state before and after."""

    at = models.DateTimeField(db_index=True)
    # Null actor: the control cycle.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    verb = models.CharField(max_length=32)
    object_type = models.CharField(max_length=32)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.verb} {self.object_type} {self.object_id}"


class CycleLock(models.Model):
    """A named lease that keeps one control cycle running at a time.

    Taken and released by conditional UPDATEs, so it works the same on
    SQLite and PostgreSQL and across machines that share the database.
    """

    name = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=128, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The `cluster-leader` row uses these two: why this instance leads or is
    # read-only, and when the leader Lease was last checked.
    detail = models.CharField(max_length=255, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder or 'nobody'}"


class VariantState(models.Model):
    """The latest known state of a variant, updated by every cycle."""

    variant = models.OneToOneField(
        Variant, on_delete=models.CASCADE, related_name="state"
    )
    updated_at = models.DateTimeField()
    last_cycle = models.ForeignKey(
        ControlCycle, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    current_replicas = models.PositiveIntegerField(null=True, blank=True)
    ready_replicas = models.PositiveIntegerField(null=True, blank=True)
    pending_replicas = models.PositiveIntegerField(default=0)
    proposed_replicas = models.PositiveIntegerField(null=True, blank=True)
    hpa_target_replicas = models.PositiveIntegerField(null=True, blank=True)
    # Published desired replicas, exported on /metrics as wva_desired_replicas.
    desired_replicas = models.PositiveIntegerField(null=True, blank=True)
    # When the present `desired_replicas` value was first published.
    desired_published_at = models.DateTimeField(null=True, blank=True)
    # Read back from the live HPA that targets the workload, if there is one:
    # its name, status.currentReplicas, status.desiredReplicas, its current
    # value of wva_desired_replicas (null when it reports none), and when.
    hpa_name = models.CharField(max_length=253, blank=True)
    hpa_current_replicas = models.PositiveIntegerField(null=True, blank=True)
    hpa_desired_replicas = models.PositiveIntegerField(null=True, blank=True)
    hpa_metric_value = models.FloatField(null=True, blank=True)
    hpa_read_at = models.DateTimeField(null=True, blank=True)
    mean_kv_cache_usage = models.FloatField(null=True, blank=True)
    total_waiting = models.FloatField(null=True, blank=True)
    # HPA-style conditions: [{"type", "status", "reason", "message", "since"}].
    conditions = models.JSONField(default=list)
    # Consecutive cycles with a missing KV-cache sample on some replica.
    missing_kv_cycles = models.PositiveIntegerField(default=0)
    degraded = models.BooleanField(default=False)
    # Compute bound k2 learned from the replicas: the tokens in use (KV usage
    # times the KV pool) when a replica's waiting queue first reached the
    # model's queue threshold, averaged over `learned_compute_count`
    # observations (see `cycle_demand.learn_compute_bound`).
    learned_compute_tokens = models.FloatField(null=True, blank=True)
    learned_compute_count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"state of {self.variant}"
