"""Catalogue: teams, accelerators, service classes, models and variants.

Values that reach a Prometheus label or a Kubernetes name are validated at
input: no control characters, and Kubernetes names follow RFC 1123.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from wva_web.catalog.validators import (
    FiniteNumber,
    LabelText,
    at_most,
    free_text,
    validate_hpa_metrics,
    validate_profile,
)

# RFC 1123 label (namespaces) and subdomain (workload names), as Kubernetes
# validates them. The patterns end in \Z because `$` also matches before a
# trailing newline.
dns_label = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z",
    "must be a lowercase RFC 1123 label: a-z, 0-9 and '-', at most 63 characters",
)
dns_subdomain = RegexValidator(
    r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z",
    "must be a lowercase RFC 1123 name: a-z, 0-9, '-' and '.', at most 253 characters",
)
non_negative = MinValueValidator(0)
fraction = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class Role(models.TextChoices):
    """Roles within a team, ordered: each one includes the rights before it."""

    VIEWER = "viewer", "viewer"
    OPERATOR = "operator", "operator"
    APPROVER = "approver", "approver"


ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.APPROVER: 3}


class Team(models.Model):
    name = models.SlugField(max_length=63, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one team. Superusers see and edit every team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_role_per_team")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class Accelerator(models.Model):
    """A GPU type: its unit cost, power curve and the count available."""

    name = models.CharField(max_length=64, unique=True, validators=[LabelText("name")])
    vendor = models.CharField(
        max_length=32, default="NVIDIA", validators=[LabelText("vendor")]
    )
    # Value of the node label (nvidia.com/gpu.product or the vendor's
    # equivalent) that identifies this type in the cluster.
    node_label_value = models.CharField(
        max_length=128, blank=True, validators=[LabelText("node_label_value")]
    )
    memory_gb = models.FloatField(
        validators=[
            MinValueValidator(0.1),
            at_most(4096, "memory_gb", "GB"),
            FiniteNumber("memory_gb"),
        ]
    )
    usd_per_gpu_hour = models.FloatField(
        validators=[
            non_negative,
            at_most(1000, "usd_per_gpu_hour", "USD"),
            FiniteNumber("usd_per_gpu_hour"),
        ]
    )
    power_idle_w = models.FloatField(
        validators=[
            non_negative,
            at_most(5000, "power_idle_w", "W"),
            FiniteNumber("power_idle_w"),
        ]
    )
    power_mid_w = models.FloatField(
        validators=[
            non_negative,
            at_most(5000, "power_mid_w", "W"),
            FiniteNumber("power_mid_w"),
        ]
    )
    power_full_w = models.FloatField(
        validators=[
            non_negative,
            at_most(5000, "power_full_w", "W"),
            FiniteNumber("power_full_w"),
        ]
    )
    # Budget of GPUs of this type the console may use; null means unknown,
    # which is never read as zero.
    gpus_available = models.PositiveIntegerField(
        null=True, blank=True, validators=[at_most(1_000_000, "gpus_available")]
    )
    source = models.TextField(blank=True, validators=[free_text("source")])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if (
            self.power_idle_w is None
            or self.power_mid_w is None
            or self.power_full_w is None
        ):
            return
        if not self.power_idle_w <= self.power_mid_w <= self.power_full_w:
            raise ValidationError(
                {"power_mid_w": "power must rise from idle to 60% to 100% utilisation"}
            )


class ServiceClass(models.Model):
    """An SLO class. Priority 1 is served first when GPUs run short."""

    class Kind(models.TextChoices):
        INTERACTIVE = "interactive", "interactive"
        BATCH = "batch", "batch"

    name = models.CharField(max_length=64, unique=True, validators=[LabelText("name")])
    priority = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), at_most(1000, "priority")]
    )
    ttft_ms = models.FloatField(
        validators=[
            MinValueValidator(1.0),
            at_most(3_600_000, "ttft_ms", "ms"),
            FiniteNumber("ttft_ms"),
        ]
    )
    itl_ms = models.FloatField(
        validators=[
            MinValueValidator(1.0),
            at_most(3_600_000, "itl_ms", "ms"),
            FiniteNumber("itl_ms"),
        ]
    )
    kind = models.CharField(
        max_length=16, choices=Kind.choices, default=Kind.INTERACTIVE
    )

    class Meta:
        ordering = ["priority", "name"]
        verbose_name_plural = "service classes"

    def __str__(self) -> str:
        return self.name


class Policy(models.TextChoices):
    WVA = "wva", "wva (SLO sizing with saturation fallback)"
    WVA_V1 = "wva-v1", "wva-v1 (saturation analysis)"
    HPA = "hpa", "hpa (Kubernetes HPA algorithm)"


class InferenceModel(models.Model):
    """A base model served to users, with the saturation thresholds of its variants."""

    name = models.CharField(max_length=200, unique=True, validators=[LabelText("name")])
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="models")
    service_class = models.ForeignKey(
        ServiceClass, on_delete=models.PROTECT, related_name="models"
    )
    policy = models.CharField(
        max_length=16,
        choices=Policy.choices,
        blank=True,
        help_text=(
            "Autoscaling policy of the model's variants. Empty: the console's "
            "default, set by WVA_POLICY (wva unless set)."
        ),
    )
    kv_cache_threshold = models.FloatField(
        default=0.80, validators=[*fraction, FiniteNumber("kv_cache_threshold")]
    )
    queue_length_threshold = models.FloatField(
        default=5.0,
        validators=[
            MinValueValidator(1.0),
            at_most(100_000, "queue_length_threshold", "waiting requests"),
            FiniteNumber("queue_length_threshold"),
        ],
    )
    kv_spare_trigger = models.FloatField(
        default=0.10, validators=[*fraction, FiniteNumber("kv_spare_trigger")]
    )
    queue_spare_trigger = models.FloatField(
        default=3.0,
        validators=[
            non_negative,
            at_most(100_000, "queue_spare_trigger", "waiting requests"),
            FiniteNumber("queue_spare_trigger"),
        ],
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if (
            self.queue_length_threshold is not None
            and self.queue_spare_trigger is not None
            and self.queue_spare_trigger >= self.queue_length_threshold
        ):
            raise ValidationError(
                {
                    "queue_spare_trigger": (
                        "must be below queue_length_threshold "
                        f"({self.queue_length_threshold:g}), or every cycle scales up"
                    )
                }
            )
        if (
            self.kv_cache_threshold is not None
            and self.kv_spare_trigger is not None
            and self.kv_spare_trigger >= self.kv_cache_threshold
        ):
            raise ValidationError(
                {
                    "kv_spare_trigger": (
                        "must be below kv_cache_threshold "
                        f"({self.kv_cache_threshold:g}), or every cycle scales up"
                    )
                }
            )


def default_profile() -> dict[str, float]:
    return {}


def default_hpa_metrics() -> list[dict[str, object]]:
    return [
        {"metric": "num_requests_waiting", "target_average_value": 4},
        {"metric": "kv_cache_usage", "target_average_value": 0.6},
    ]


class Variant(models.Model):
    """One way of serving a model, and the Kubernetes workload that runs it."""

    class Mode(models.TextChoices):
        AUTO = "auto", "auto: apply at once"
        APPROVAL = "approval", "approval: wait for an approver"
        ADVISORY = "advisory", "advisory: record only"

    class Kind(models.TextChoices):
        DEPLOYMENT = "Deployment", "Deployment"
        STATEFUL_SET = "StatefulSet", "StatefulSet"
        LEADER_WORKER_SET = "LeaderWorkerSet", "LeaderWorkerSet"

    name = models.CharField(max_length=128, unique=True, validators=[LabelText("name")])
    model = models.ForeignKey(
        InferenceModel, on_delete=models.PROTECT, related_name="variants"
    )
    accelerator = models.ForeignKey(
        Accelerator, on_delete=models.PROTECT, related_name="variants"
    )
    gpus_per_replica = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), at_most(64, "gpus_per_replica")]
    )
    max_num_seqs = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(1), at_most(100_000, "max_num_seqs")]
    )
    max_model_len = models.PositiveIntegerField(
        default=8192,
        validators=[
            MinValueValidator(1),
            at_most(10_000_000, "max_model_len", "tokens"),
        ],
    )
    max_num_batched_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[at_most(10_000_000, "max_num_batched_tokens", "tokens")],
    )
    # Latency profile in ms: the decode step is alpha + beta * batch and the
    # prefill gamma + delta * input tokens * batch. kv_tokens is the KV pool.
    profile = models.JSONField(
        default=default_profile, blank=True, validators=[validate_profile]
    )
    min_replicas = models.PositiveIntegerField(
        default=1, validators=[at_most(10_000, "min_replicas")]
    )
    max_replicas = models.PositiveIntegerField(
        default=4, validators=[at_most(10_000, "max_replicas")]
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.APPROVAL)
    namespace = models.CharField(max_length=63, validators=[dns_label])
    kind = models.CharField(
        max_length=32, choices=Kind.choices, default=Kind.DEPLOYMENT
    )
    workload_name = models.CharField(max_length=253, validators=[dns_subdomain])
    # Metrics of the HPA counterfactual: per-pod metric name and target.
    hpa_metrics = models.JSONField(
        default=default_hpa_metrics, blank=True, validators=[validate_hpa_metrics]
    )
    # A manual override pins the replica count until this time.
    pinned_replicas = models.PositiveIntegerField(null=True, blank=True)
    pinned_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["model__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "kind", "workload_name"],
                name="one_variant_per_workload",
            ),
            models.CheckConstraint(
                condition=models.Q(min_replicas__lte=models.F("max_replicas")),
                name="min_replicas_not_above_max",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def team(self) -> Team:
        return self.model.team

    @property
    def usd_per_replica_hour(self) -> float:
        return self.accelerator.usd_per_gpu_hour * self.gpus_per_replica

    def clean(self) -> None:
        if (
            self.min_replicas is not None
            and self.max_replicas is not None
            and self.min_replicas > self.max_replicas
        ):
            raise ValidationError(
                {
                    "min_replicas": (
                        f"min_replicas ({self.min_replicas}) must not be above "
                        f"max_replicas ({self.max_replicas})"
                    )
                }
            )
