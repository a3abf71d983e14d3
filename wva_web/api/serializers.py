"""Serializers of the REST API. Each lists its fields, and none uses `__all__`.

Writes run the model's `full_clean` plus the shared catalogue rules in
`wva_web.catalog.forms`, so the API and the admin give the same messages,
each keyed by the field it is about. Number fields reject `true` and
`false`, NaN and infinity. A stored number that is not finite is returned
as null, never as a response that fails to render.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from wva_web.catalog import access, forms
from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    Role,
    ServiceClass,
    Team,
    Variant,
)
from wva_web.control.models import (
    AuditLog,
    ControlCycle,
    Decision,
    MetricSample,
    ScaleAction,
    VariantState,
)
from wva_web.dashboard import explain

CONDITION_KEYS = ("type", "status", "reason", "message", "since")


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "the request conflicts with the current state"
    default_code = "conflict"


def _request_user(serializer: serializers.Serializer) -> Any:
    request = serializer.context.get("request")
    return getattr(request, "user", None)


def finite_or_none(value: Any) -> float | None:
    """Return a float for JSON, or None when it is missing, NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


class StrictFloatField(serializers.FloatField):
    """A float that rejects booleans and non-finite values, naming the field.

    On output a stored NaN or infinity becomes null.
    """

    default_error_messages = {
        **serializers.FloatField.default_error_messages,
        "invalid": "{field} must be a finite number",
        "boolean": "{field} must be a number, not {value}",
        "overflow": "{field} is too large",
    }

    def fail(self, key: str, **kwargs: Any) -> None:
        kwargs.setdefault("field", self.field_name or "value")
        super().fail(key, **kwargs)

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool):
            self.fail("boolean", value=json.dumps(data))
        return super().to_internal_value(data)

    def to_representation(self, value: Any) -> float | None:  # type: ignore[override]
        return finite_or_none(value)


class StrictIntegerField(serializers.IntegerField):
    """An integer that rejects booleans, naming the field."""

    default_error_messages = {
        **serializers.IntegerField.default_error_messages,
        "invalid": "{field} must be a whole number",
        "boolean": "{field} must be a whole number, not {value}",
    }

    def fail(self, key: str, **kwargs: Any) -> None:
        kwargs.setdefault("field", self.field_name or "value")
        super().fail(key, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self.fail("boolean", value=json.dumps(data))
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """A model serializer with strict number fields and bounds that name the field.

    DRF turns a model's `MaxValueValidator` into `max_value` with a generic
    message. Here the model's own validator is kept, so its message (such as
    "usd_per_gpu_hour must be at most 1,000 USD") reaches the client.
    """

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.FloatField: StrictFloatField,
        models.IntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.PositiveBigIntegerField: StrictIntegerField,
    }

    def build_standard_field(
        self, field_name: str, model_field: models.Field
    ) -> tuple[type, dict[str, Any]]:
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        if "max_value" in kwargs:
            del kwargs["max_value"]
            upper = [
                validator
                for validator in model_field.validators
                if isinstance(validator, MaxValueValidator)
            ]
            kwargs["validators"] = [*kwargs.get("validators", []), *upper[:1]]
        return field_class, kwargs


@extend_schema_field(OpenApiTypes.INT)
class ScopedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A primary key limited to rows the user may see. Other ids are "not found"."""

    default_error_messages = {
        **serializers.PrimaryKeyRelatedField.default_error_messages,
        "does_not_exist": "{label} {pk_value} not found",
    }

    def __init__(self, scope: Any, label_word: str, **kwargs: Any) -> None:
        self.scope = scope
        self.label_word = label_word
        super().__init__(**kwargs)

    def get_queryset(self) -> models.QuerySet:
        return self.scope(_request_user(self.parent))

    def fail(self, key: str, **kwargs: Any) -> None:
        kwargs.setdefault("label", self.label_word)
        super().fail(key, **kwargs)


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class AcceleratorRefField(serializers.RelatedField):
    """An accelerator given by id or by name."""

    default_error_messages = {
        "not_found": "accelerator {value!r} not found. Give an accelerator id or name",
    }

    def to_internal_value(self, data: Any) -> Accelerator:
        queryset = self.get_queryset()
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("not_found", value=data)
        found = None
        if isinstance(data, int) or str(data).isdigit():
            found = queryset.filter(pk=int(data)).first()
        if found is None and isinstance(data, str):
            found = queryset.filter(name=data).first()
        if found is None:
            self.fail("not_found", value=data)
        return found

    def to_representation(self, value: Accelerator) -> int:
        return int(value.pk)


class ModelCleanMixin:
    """Run the model's `full_clean` on the instance the write would produce."""

    def run_model_clean(self, attrs: dict[str, Any]) -> models.Model:
        instance = getattr(self, "instance", None)
        candidate = copy.copy(instance) if instance is not None else self.Meta.model()  # type: ignore[attr-defined]
        for name, value in attrs.items():
            setattr(candidate, name, value)
        try:
            candidate.full_clean(validate_unique=False, validate_constraints=False)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                serializers.as_serializer_error(exc)
            ) from exc
        return candidate

    def merged_values(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Return the field values after the write: stored or default, then `attrs`.

        Foreign keys appear by `attname` (`model_id`) unless `attrs` sets them.
        """
        instance = getattr(self, "instance", None)
        if instance is None:
            instance = self.Meta.model()  # type: ignore[attr-defined]
        values = {
            field.attname: getattr(instance, field.attname)
            for field in instance._meta.concrete_fields
        }
        values.update(attrs)
        return values


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "name"]


class AcceleratorSerializer(ModelCleanMixin, StrictModelSerializer):
    class Meta:
        model = Accelerator
        fields = [
            "id",
            "name",
            "vendor",
            "node_label_value",
            "memory_gb",
            "usd_per_gpu_hour",
            "power_idle_w",
            "power_mid_w",
            "power_full_w",
            "gpus_available",
            "source",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self.run_model_clean(attrs)
        return attrs


class ServiceClassSerializer(ModelCleanMixin, StrictModelSerializer):
    class Meta:
        model = ServiceClass
        fields = ["id", "name", "priority", "ttft_ms", "itl_ms", "kind"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self.run_model_clean(attrs)
        return attrs


def _check_operator(user: Any, team: Team) -> None:
    if not access.has_role(user, team.pk, Role.OPERATOR):
        raise exceptions.PermissionDenied(
            f"this change needs the operator role in team {team}"
        )


class InferenceModelSerializer(ModelCleanMixin, StrictModelSerializer):
    team = ScopedPrimaryKeyField(access.visible_teams, "team")
    # Declared without range validators so the shared rules give the message.
    kv_cache_threshold = StrictFloatField(required=False)
    queue_length_threshold = StrictFloatField(required=False)
    kv_spare_trigger = StrictFloatField(required=False)
    queue_spare_trigger = StrictFloatField(required=False)

    class Meta:
        model = InferenceModel
        fields = [
            "id",
            "name",
            "team",
            "service_class",
            "policy",
            "kv_cache_threshold",
            "queue_length_threshold",
            "kv_spare_trigger",
            "queue_spare_trigger",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = _request_user(self)
        values = self.merged_values(attrs)
        _check_operator(user, attrs.get("team") or self.instance.team)
        if self.instance is not None and "team" in attrs:
            _check_operator(user, self.instance.team)
        errors = forms.model_threshold_errors(self._with_defaults(values))
        if errors:
            raise serializers.ValidationError(errors)
        self.run_model_clean(attrs)
        return attrs

    @staticmethod
    def _with_defaults(values: dict[str, Any]) -> dict[str, Any]:
        names = (
            "kv_cache_threshold",
            "queue_length_threshold",
            "kv_spare_trigger",
            "queue_spare_trigger",
        )
        filled = dict(values)
        for name in names:
            if filled.get(name) is None:
                filled[name] = InferenceModel._meta.get_field(name).get_default()
        return filled


def normalise_conditions(conditions: Any) -> list[dict[str, Any]]:
    """Return HPA-style conditions with every key present."""
    if not isinstance(conditions, list):
        return []
    return [
        {key: entry.get(key) for key in CONDITION_KEYS}
        for entry in conditions
        if isinstance(entry, dict)
    ]


class ConditionSerializer(serializers.Serializer):
    type = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    message = serializers.CharField(allow_null=True)
    since = serializers.CharField(allow_null=True)


class VariantStateSerializer(StrictModelSerializer):
    conditions = serializers.SerializerMethodField()

    class Meta:
        model = VariantState
        fields = [
            "updated_at",
            "last_cycle",
            "current_replicas",
            "ready_replicas",
            "pending_replicas",
            "proposed_replicas",
            "hpa_target_replicas",
            "desired_replicas",
            "desired_published_at",
            "hpa_name",
            "hpa_current_replicas",
            "hpa_desired_replicas",
            "hpa_metric_value",
            "hpa_read_at",
            "mean_kv_cache_usage",
            "total_waiting",
            "degraded",
            "conditions",
        ]

    @extend_schema_field(ConditionSerializer(many=True))
    def get_conditions(self, state: VariantState) -> list[dict[str, Any]]:
        return normalise_conditions(state.conditions)


WORKLOAD_FIELDS = ("namespace", "kind", "workload_name")


def _replica_cost(variant: Variant) -> float | None:
    """Return price times GPUs; None when the product overflows or is not a number."""
    try:
        return float(variant.usd_per_replica_hour)
    except (TypeError, ValueError, OverflowError):
        return None


class VariantSerializer(ModelCleanMixin, StrictModelSerializer):
    model = ScopedPrimaryKeyField(access.visible_models, "model")
    model_name = serializers.CharField(source="model.name", read_only=True)
    team = serializers.CharField(source="model.team.name", read_only=True)
    accelerator = AcceleratorRefField(queryset=Accelerator.objects.all())
    accelerator_name = serializers.CharField(source="accelerator.name", read_only=True)
    usd_per_replica_hour = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()
    warnings = serializers.SerializerMethodField()

    class Meta:
        model = Variant
        fields = [
            "id",
            "name",
            "model",
            "model_name",
            "team",
            "accelerator",
            "accelerator_name",
            "gpus_per_replica",
            "max_num_seqs",
            "max_model_len",
            "max_num_batched_tokens",
            "profile",
            "min_replicas",
            "max_replicas",
            "mode",
            "namespace",
            "kind",
            "workload_name",
            "hpa_metrics",
            "pinned_replicas",
            "pinned_until",
            "usd_per_replica_hour",
            "state",
            "warnings",
        ]
        read_only_fields = ["pinned_replicas", "pinned_until"]
        # The workload check below names the existing variant. A race past it
        # ends in IntegrityError, which the view returns as 409.
        validators: list[Any] = []

    @extend_schema_field(VariantStateSerializer(allow_null=True))
    def get_state(self, variant: Variant) -> dict[str, Any] | None:
        try:
            state = variant.state
        except VariantState.DoesNotExist:
            return None
        return VariantStateSerializer(state).data

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_usd_per_replica_hour(self, variant: Variant) -> float | None:
        """Return the cost per replica-hour; null when the stored price overflows."""
        return finite_or_none(_replica_cost(variant))

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_warnings(self, variant: Variant) -> list[str]:
        warnings = forms.variant_warnings(
            {"max_num_seqs": variant.max_num_seqs, "hpa_metrics": variant.hpa_metrics}
        )
        if finite_or_none(_replica_cost(variant)) is None:
            warnings.append(
                "usd_per_replica_hour: the cost per replica-hour is not a finite "
                f"number (usd_per_gpu_hour of {variant.accelerator.name} times "
                f"{variant.gpus_per_replica} GPUs), so it is shown as null. Correct "
                "the accelerator's usd_per_gpu_hour"
            )
        return warnings

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = _request_user(self)
        values = self.merged_values(attrs)
        team = (attrs.get("model") or self.instance.model).team
        _check_operator(user, team)
        if self.instance is not None and "model" in attrs:
            _check_operator(user, self.instance.model.team)
        self._check_mode(user, team, values)
        errors = forms.variant_errors(values)
        if errors:
            raise serializers.ValidationError(errors)
        candidate = self.run_model_clean(attrs)
        self._check_workload(values, user)
        self._check_hpa(candidate, attrs)
        return attrs

    def _check_mode(self, user: Any, team: Team, values: dict[str, Any]) -> None:
        """Return 403 when an operator would put the variant in mode auto."""
        if values.get("mode") != Variant.Mode.AUTO:
            return
        previous_mode, previous_team_id = None, None
        if self.instance is not None:
            previous_mode = self.instance.mode
            previous_team_id = self.instance.model.team_id
        message = forms.auto_mode_error(user, team, previous_mode, previous_team_id)
        if message:
            raise exceptions.PermissionDenied(message)

    def _check_workload(self, values: dict[str, Any], user: Any) -> None:
        pk = self.instance.pk if self.instance is not None else None
        workload = [values[name] for name in WORKLOAD_FIELDS]
        message = forms.duplicate_workload_error(
            *workload, pk, access.visible_variants(user)
        )
        if message:
            raise serializers.ValidationError({"workload_name": [message]})

    def _check_hpa(self, candidate: Variant, attrs: dict[str, Any]) -> None:
        changed = self.instance is None or any(
            name in attrs and attrs[name] != getattr(self.instance, name)
            for name in ("mode", *WORKLOAD_FIELDS)
        )
        if not changed:
            return
        message = forms.hpa_conflict_error(candidate)
        if message:
            raise serializers.ValidationError({"mode": [message]})


class ScaleActionSerializer(serializers.ModelSerializer):
    variant_name = serializers.CharField(source="variant.name", read_only=True)
    accelerator_name = serializers.CharField(
        source="variant.accelerator.name", read_only=True
    )
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    effective_replicas = serializers.IntegerField(read_only=True)
    usd_per_hour_change = StrictFloatField(read_only=True, allow_null=True)

    class Meta:
        model = ScaleAction
        fields = [
            "id",
            "variant",
            "variant_name",
            "accelerator_name",
            "decision",
            "created_at",
            "from_replicas",
            "to_replicas",
            "effective_replicas",
            "usd_per_hour_change",
            "state",
            "requested_by",
            "decided_by",
            "decided_at",
            "override_replicas",
            "override_until",
            "victim_pod",
            "reasons",
            "applied_at",
            "failure_reason",
            "message",
            "dry_run",
        ]
        read_only_fields = fields


class ManualActionSerializer(serializers.Serializer):
    variant = ScopedPrimaryKeyField(access.visible_variants, "variant")
    to_replicas = StrictIntegerField(min_value=0, max_value=10_000)


class RejectSerializer(serializers.Serializer):
    message = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class OverrideSerializer(serializers.Serializer):
    replicas = StrictIntegerField(min_value=0, max_value=10_000)
    duration_s = StrictFloatField(
        required=False, allow_null=True, min_value=1.0, max_value=7 * 86400.0
    )


def expanded(serializer: serializers.Serializer) -> bool:
    """Return True unless the view asked to leave out the large JSON fields.

    List views set `expand` in the context to False unless `?expand=1`.
    """
    return bool(serializer.context.get("expand", True))


class DecisionSerializer(serializers.ModelSerializer):
    """A decision. Lists leave out `analysis` and `explanation` unless `?expand=1`.

    `explanation` carries what the pages show for the decision: policy,
    solver, reason codes with their texts, inputs, peaks, the HPA
    counterfactual, unserved demand and the replicas to remove.
    """

    variant_name = serializers.CharField(source="variant.name", read_only=True)
    explanation = serializers.SerializerMethodField()

    class Meta:
        model = Decision
        fields = [
            "id",
            "cycle",
            "variant",
            "variant_name",
            "current_replicas",
            "ready_replicas",
            "target_replicas",
            "hpa_target_replicas",
            "hpa_reasons",
            "reasons",
            "bound_by",
            "victim_pod",
            "analysis",
            "message",
            "explanation",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_explanation(self, decision: Decision) -> dict[str, Any]:
        if not expanded(self):
            return {}
        # A row that records no policy shows the cycle's, when the cycle is
        # already loaded: a query per row would slow down long lists.
        default = ""
        if Decision._meta.get_field("cycle").is_cached(decision):
            default = decision.cycle.policy
        return explain.explain(decision, default).as_json()

    def to_representation(self, instance: Decision) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not expanded(self):
            data.pop("analysis", None)
            data.pop("explanation", None)
        return data


# Large JSON fields of a cycle, left out of lists unless `?expand=1`.
CYCLE_LARGE_FIELDS = ("inputs", "outputs")
# Raw cycle records name every team's variants and pods: superusers only.
CYCLE_RAW_FIELDS = ("inputs", "outputs", "errors")


class ControlCycleSerializer(serializers.ModelSerializer):
    """A cycle with its visible decisions.

    Lists leave out `inputs`, `outputs` and each decision's `analysis` and
    `explanation` unless `?expand=1`, because one cycle of a large fleet
    stores hundreds of kB.
    """

    decisions = serializers.SerializerMethodField()
    error_count = serializers.SerializerMethodField()

    class Meta:
        model = ControlCycle
        fields = [
            "id",
            "started_at",
            "finished_at",
            "status",
            "policy",
            "timings_ms",
            "error_count",
            "inputs",
            "outputs",
            "errors",
            "decisions",
        ]

    @extend_schema_field(DecisionSerializer(many=True))
    def get_decisions(self, cycle: ControlCycle) -> Any:
        decisions = getattr(cycle, "visible_decisions", None)
        if decisions is None:
            decisions = access.visible_decisions(_request_user(self)).filter(
                cycle=cycle
            )
        return DecisionSerializer(decisions, many=True, context=self.context).data

    @extend_schema_field(OpenApiTypes.INT)
    def get_error_count(self, cycle: ControlCycle) -> int:
        return len(cycle.errors) if isinstance(cycle.errors, list) else 0

    def to_representation(self, instance: ControlCycle) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not access.is_superuser(_request_user(self)):
            for name in CYCLE_RAW_FIELDS:
                data.pop(name, None)
        if not expanded(self):
            for name in CYCLE_LARGE_FIELDS:
                data.pop(name, None)
        return data


class MetricSampleSerializer(StrictModelSerializer):
    class Meta:
        model = MetricSample
        fields = [
            "id",
            "cycle",
            "variant",
            "pod",
            "phase",
            "ready",
            "sampled_at",
            "kv_cache_usage",
            "num_requests_waiting",
            "num_requests_running",
            "prompt_tokens_total",
            "generation_tokens_total",
            "status",
            "detail",
        ]


class AuditLogSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "at",
            "actor",
            "verb",
            "object_type",
            "object_id",
            "before",
            "after",
            "message",
        ]
