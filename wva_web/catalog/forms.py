"""Catalogue validation shared by the API serializers and the admin forms.

The model's own `full_clean` checks single fields. The rules here add the
ones that catch a configuration which makes scaling impossible or constant:
a threshold given in percent, a spare trigger at or above its threshold, or
`max_replicas` 0. They also reject a second variant on one workload and a
variant set to `auto` while an HPA already scales its workload, or by a
user without the approver role in its team. Each message names the field
and the fix. Single-field rules on numbers, text and JSON live in
`wva_web.catalog.validators`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django import forms

from wva_web.catalog import access, validators
from wva_web.catalog.models import InferenceModel, Role, Team, Variant

logger = logging.getLogger(__name__)


def _number(values: Mapping[str, Any], name: str) -> float | None:
    value = values.get(name)
    if value is None or isinstance(value, bool):
        return None
    return float(value)


def _kv_threshold_error(kv: float) -> str | None:
    if 0 < kv <= 1:
        return None
    message = f"must be greater than 0 and at most 1, got {kv:g}"
    if 1 < kv <= 100:
        message += f". Use {kv / 100:g} for {kv:g}%"
    return message


def _spare_trigger_error(
    spare: float | None, threshold: float | None, threshold_name: str
) -> str | None:
    """Check a spare trigger; a None threshold skips the comparison."""
    if spare is None:
        return None
    if spare < 0:
        return f"must be at least 0, got {spare:g}"
    if threshold is not None and spare >= threshold:
        return (
            f"must be below {threshold_name} ({threshold:g}), or every cycle scales up"
        )
    return None


def model_threshold_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """Check the saturation thresholds of a model and return errors by field."""
    errors: dict[str, str] = {}
    kv = _number(values, "kv_cache_threshold")
    queue = _number(values, "queue_length_threshold")
    if kv is not None and (message := _kv_threshold_error(kv)):
        errors["kv_cache_threshold"] = message
        kv = None
    if queue is not None and queue < 1:
        errors["queue_length_threshold"] = (
            f"must be at least 1 waiting request, got {queue:g}"
        )
        queue = None
    spares = [
        ("kv_spare_trigger", kv, "kv_cache_threshold"),
        ("queue_spare_trigger", queue, "queue_length_threshold"),
    ]
    for name, threshold, threshold_name in spares:
        spare = _number(values, name)
        if message := _spare_trigger_error(spare, threshold, threshold_name):
            errors[name] = message
    return errors


def variant_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """Check replica bounds and HPA metrics of a variant and return errors by field."""
    errors: dict[str, str] = {}
    low = values.get("min_replicas")
    high = values.get("max_replicas")
    if high == 0:
        errors["max_replicas"] = (
            "must be at least 1. To stop scaling, set mode to advisory "
            "(record only) instead of max_replicas 0"
        )
    elif low is not None and high is not None and low > high:
        errors["min_replicas"] = (
            f"min_replicas ({low}) must not be above max_replicas ({high})"
        )
        errors["max_replicas"] = (
            f"max_replicas ({high}) must not be below min_replicas ({low})"
        )
    if "hpa_metrics" in values and (
        message := validators.hpa_metrics_error(values["hpa_metrics"])
    ):
        errors["hpa_metrics"] = f"hpa_metrics {message}"
    if "profile" in values and (message := validators.profile_error(values["profile"])):
        errors["profile"] = f"profile {message}"
    return errors


def variant_warnings(values: Mapping[str, Any]) -> list[str]:
    """Return warnings about settings that are valid but cannot work as meant."""
    warnings: list[str] = []
    max_seqs = values.get("max_num_seqs")
    metrics = values.get("hpa_metrics")
    if not isinstance(metrics, list) or max_seqs is None:
        return warnings
    for entry in metrics:
        if not isinstance(entry, dict) or entry.get("metric") != "num_requests_running":
            continue
        target = entry.get("target_average_value")
        if isinstance(target, int | float) and target > max_seqs:
            warnings.append(
                f"hpa_metrics: the num_requests_running target {target:g} can never be "
                f"reached, because a replica runs at most max_num_seqs={max_seqs} "
                "sequences, so the HPA counterfactual never scales up on it"
            )
    return warnings


def duplicate_workload_error(
    namespace: str, kind: str, workload_name: str, exclude_pk: int | None, visible: Any
) -> str | None:
    """Name the variant that already runs this workload, if any.

    `visible` is a queryset of the variants the user may see. A variant of
    another team is not named, so the message reveals no name.
    """
    others = Variant.objects.filter(
        namespace=namespace, kind=kind, workload_name=workload_name
    ).exclude(pk=exclude_pk)
    existing = others.values_list("pk", "name").first()
    if existing is None:
        return None
    workload = f"{kind} {namespace}/{workload_name}"
    if visible is None or visible.filter(pk=existing[0]).exists():
        return f"{workload} is already scaled by variant {existing[1]}"
    return f"{workload} is already scaled by a variant of another team"


def find_conflicting_hpa(variant: Variant) -> str | None:
    """Return the name of an HPA whose scaleTargetRef is the variant's workload."""
    try:
        from wva_web.integrations import kube
    except ImportError:
        # NOTE: without the actuator module an HPA on the workload goes unnoticed here.
        logger.warning("actuator module missing, HPA conflict check skipped")
        return None
    try:
        actuator = kube.get_actuator()
        find_hpa = getattr(actuator, "find_hpa", None)
        if find_hpa is None:
            # NOTE: this actuator cannot list HPAs, so the conflict check is skipped.
            logger.warning("actuator has no find_hpa, HPA conflict check skipped")
            return None
        return find_hpa(variant)
    except kube.ActuatorError as exc:
        # NOTE: an unreachable cluster lets mode auto through. The control
        # cycle moves the variant to advisory when it finds the HPA later.
        logger.warning("HPA conflict check of %s skipped: %s", variant.name, exc)
        return None


def hpa_conflict_error(variant: Variant) -> str | None:
    """Return a message when mode auto would fight an HPA on the same workload."""
    if variant.mode != Variant.Mode.AUTO:
        return None
    hpa = find_conflicting_hpa(variant)
    if hpa is None:
        return None
    return (
        f"HorizontalPodAutoscaler {hpa} already scales {variant.kind} "
        f"{variant.namespace}/{variant.workload_name}, and mode auto would make both "
        "write its replica count. Keep mode approval or advisory and let the HPA "
        "actuate from the published wva_desired_replicas gauge"
    )


def auto_mode_error(
    user: Any,
    team: Team,
    previous_mode: str | None,
    previous_team_id: int | None,
) -> str | None:
    """Return a message when the user may not put a variant of `team` in mode auto.

    In mode auto the control cycle applies its scale actions without an
    approval, so choosing it needs the approver role in the variant's team.
    A variant that stays in auto in the same team needs no new check, so an
    operator may still change its replica bounds (the change is audited).
    """
    if previous_mode == Variant.Mode.AUTO and previous_team_id == team.pk:
        return None
    if access.has_role(user, team.pk, Role.APPROVER):
        return None
    return (
        f"setting mode auto needs the approver role in team {team}, because the "
        "control cycle then applies scale actions without an approval. Keep mode "
        "approval, or ask an approver of the team to switch the mode"
    )


def _values(form: forms.ModelForm) -> dict[str, Any]:
    values = {name: getattr(form.instance, name, None) for name in form.fields}
    values.update(form.cleaned_data)
    return values


class DeduplicatedErrorsMixin:
    """Drop a message that the model's own `clean` repeats after the form's."""

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]
        errors = self._errors  # type: ignore[attr-defined]
        for field, messages in list(errors.items()):
            unique = list(dict.fromkeys(messages))
            if len(unique) != len(messages):
                errors[field] = self.error_class(unique)  # type: ignore[attr-defined]


class InferenceModelForm(DeduplicatedErrorsMixin, forms.ModelForm):
    class Meta:
        model = InferenceModel
        fields = [
            "name",
            "team",
            "service_class",
            "policy",
            "kv_cache_threshold",
            "queue_length_threshold",
            "kv_spare_trigger",
            "queue_spare_trigger",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for field, message in model_threshold_errors(cleaned).items():
            self.add_error(field, message)
        return cleaned


class VariantForm(DeduplicatedErrorsMixin, forms.ModelForm):
    class Meta:
        model = Variant
        fields = [
            "name",
            "model",
            "accelerator",
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
        ]

    # The admin sets the signed-in user, whose role the mode rule checks.
    user: Any = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for field, message in variant_errors(_values(self)).items():
            if field in self.fields and field not in self.errors:
                self.add_error(field, message)
        self._check_mode(cleaned)
        workload = [
            cleaned.get(name) for name in ("namespace", "kind", "workload_name")
        ]
        if all(workload):
            message = duplicate_workload_error(*workload, self.instance.pk, None)
            if message:
                self.add_error("workload_name", message)
        if not self.errors:
            candidate = Variant(**{**_values(self), "pk": self.instance.pk})
            if message := hpa_conflict_error(candidate):
                self.add_error("mode", message)
        return cleaned

    def _check_mode(self, cleaned: dict[str, Any]) -> None:
        model = cleaned.get("model")
        if cleaned.get("mode") != Variant.Mode.AUTO or model is None:
            return
        previous_mode, previous_team_id = None, None
        if self.instance.pk is not None:
            stored = (
                Variant.objects.filter(pk=self.instance.pk)
                .values_list("mode", "model__team_id")
                .first()
            )
            if stored is not None:
                previous_mode, previous_team_id = stored
        message = auto_mode_error(
            self.user, model.team, previous_mode, previous_team_id
        )
        if message:
            self.add_error("mode", message)
