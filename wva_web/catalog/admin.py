"""Admin of the catalogue. Models and variants use the same validation as the API.

Every save and delete writes an audit row, as the API does, and a variant
with scale actions or decisions cannot be deleted here either.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms import BaseModelForm, BaseModelFormSet
from django.http import HttpRequest

from wva_web.catalog import access, audit, deletion
from wva_web.catalog.forms import InferenceModelForm, VariantForm
from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    Membership,
    ServiceClass,
    Team,
    Variant,
)
from wva_web.control.models import Decision, MetricSample, ScaleAction, VariantState


class AuditedAdmin(admin.ModelAdmin):
    """Write an audit row for every create, update and delete made in the admin."""

    def save_model(
        self, request: HttpRequest, obj: Model, form: BaseModelForm, change: bool
    ) -> None:
        stored = None
        if change:
            stored = type(obj)._default_manager.filter(pk=obj.pk).first()
        before = audit.snapshot(stored) if stored is not None else None
        super().save_model(request, obj, form, change)
        if before is None:
            audit.record_create(request.user, obj)
        else:
            audit.record_update(request.user, obj, before)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        before = audit.snapshot(obj)
        kind, object_id, label = audit.object_type(obj), obj.pk, str(obj)
        with transaction.atomic():
            super().delete_model(request, obj)
            audit.record_delete(request.user, kind, object_id, label, before)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # One delete per row, so each gets its audit row and its delete checks.
        for obj in queryset:
            self.delete_model(request, obj)

    def save_formset(
        self,
        request: HttpRequest,
        form: BaseModelForm,
        formset: BaseModelFormSet,
        change: bool,
    ) -> None:
        """Save inline rows (team memberships) and audit each change of a row."""
        model = formset.model
        initial = [f.instance.pk for f in formset.initial_forms if f.instance.pk]
        stored = {
            obj.pk: (audit.snapshot(obj), str(obj))
            for obj in model._default_manager.filter(pk__in=initial)
        }
        deleted = [f.instance.pk for f in formset.deleted_forms if f.instance.pk]
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            audit.record_create(request.user, obj)
        for obj, _fields in formset.changed_objects:
            audit.record_update(request.user, obj, stored[obj.pk][0])
        kind = audit.OBJECT_TYPES.get(model, model._meta.model_name or "object")
        for pk in deleted:
            before, label = stored.get(pk, ({}, f"{kind} {pk}"))
            audit.record_delete(request.user, kind, pk, label, before)


# Verbose names of the read-only control records deleted with their variant.
CASCADED_RECORDS = frozenset(
    str(model._meta.verbose_name)
    for model in (MetricSample, VariantState, ScaleAction, Decision)
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    fields = ["user", "role"]


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_teams(request.user)


@admin.register(Accelerator)
class AcceleratorAdmin(AuditedAdmin):
    list_display = ["name", "vendor", "memory_gb", "usd_per_gpu_hour", "gpus_available"]
    search_fields = ["name", "vendor"]


@admin.register(ServiceClass)
class ServiceClassAdmin(AuditedAdmin):
    list_display = ["name", "priority", "kind", "ttft_ms", "itl_ms"]
    list_filter = ["kind"]


@admin.register(InferenceModel)
class InferenceModelAdmin(AuditedAdmin):
    form = InferenceModelForm
    list_display = ["name", "team", "service_class", "policy", "kv_cache_threshold"]
    list_filter = ["team", "policy"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_models(request.user).select_related(
            "team", "service_class"
        )


@admin.register(Variant)
class VariantAdmin(AuditedAdmin):
    form = VariantForm
    list_display = [
        "name",
        "model",
        "accelerator",
        "mode",
        "min_replicas",
        "max_replicas",
        "namespace",
        "workload_name",
    ]
    list_filter = ["mode", "accelerator", "model__team"]
    search_fields = ["name", "workload_name", "namespace"]
    readonly_fields = ["pinned_replicas", "pinned_until"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_variants(request.user).select_related(
            "model", "accelerator"
        )

    def get_form(
        self, request: HttpRequest, obj: Variant | None = None, **kwargs: Any
    ) -> type[VariantForm]:
        form = super().get_form(request, obj, **kwargs)
        # Each call builds a new form class, so the user is set for this request.
        form.user = request.user
        return form

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """List a variant with history as protected, so the admin rejects the delete.

        The control records that cascade with a variant are read-only in the
        admin, which would make every variant undeletable for lack of their
        delete permission. Their rows are not counted as needing a permission:
        a variant without scale actions or decisions may be deleted, and its
        samples and state go with it.
        """
        to_delete, counts, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        perms_needed = {name for name in perms_needed if name not in CASCADED_RECORDS}
        refusals = [message for obj in objs if (message := deletion.delete_error(obj))]
        return to_delete, counts, perms_needed, [*protected, *refusals]
