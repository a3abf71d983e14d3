"""Admin of the catalogue. Models and variants use the same validation as the API."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from wva_web.catalog import access
from wva_web.catalog.forms import InferenceModelForm, VariantForm
from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    Membership,
    ServiceClass,
    Team,
    Variant,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    fields = ["user", "role"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_teams(request.user)


@admin.register(Accelerator)
class AcceleratorAdmin(admin.ModelAdmin):
    list_display = ["name", "vendor", "memory_gb", "usd_per_gpu_hour", "gpus_available"]
    search_fields = ["name", "vendor"]


@admin.register(ServiceClass)
class ServiceClassAdmin(admin.ModelAdmin):
    list_display = ["name", "priority", "kind", "ttft_ms", "itl_ms"]
    list_filter = ["kind"]


@admin.register(InferenceModel)
class InferenceModelAdmin(admin.ModelAdmin):
    form = InferenceModelForm
    list_display = ["name", "team", "service_class", "policy", "kv_cache_threshold"]
    list_filter = ["team", "policy"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_models(request.user).select_related(
            "team", "service_class"
        )


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
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
