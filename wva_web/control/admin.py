"""Admin of the control records: read-only.

Scale actions are decided only through the action functions, and the admin
actions below call them, so the same role, self-approval and state checks
apply as in the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from wva_web.catalog import access
from wva_web.control import actions as action_functions
from wva_web.control.models import (
    AcceleratorSample,
    AuditLog,
    ControlCycle,
    CycleLock,
    Decision,
    MetricSample,
    ScaleAction,
    VariantState,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False


@admin.register(ControlCycle)
class ControlCycleAdmin(ReadOnlyAdmin):
    list_display = ["id", "started_at", "finished_at", "status", "policy"]
    list_filter = ["status", "policy"]
    date_hierarchy = "started_at"


@admin.register(MetricSample)
class MetricSampleAdmin(ReadOnlyAdmin):
    list_display = ["sampled_at", "variant", "pod", "status", "kv_cache_usage"]
    list_filter = ["status"]
    list_select_related = ["variant"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_samples(request.user)


@admin.register(AcceleratorSample)
class AcceleratorSampleAdmin(ReadOnlyAdmin):
    list_display = ["at", "accelerator", "replicas", "gpus_used", "usd_per_hour"]
    list_select_related = ["accelerator"]


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "cycle",
        "variant",
        "current_replicas",
        "target_replicas",
        "bound_by",
    ]
    list_select_related = ["cycle", "variant"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_decisions(request.user)


def _decide(
    request: HttpRequest,
    queryset: QuerySet,
    function: Callable[[int, Any], ScaleAction],
    verb: str,
) -> None:
    done = 0
    for action_id in queryset.values_list("pk", flat=True):
        try:
            function(action_id, request.user)
        except action_functions.ActionError as exc:
            messages.error(request, str(exc))
            continue
        done += 1
    if done:
        messages.success(request, f"{verb} {done} scale action(s)")


@admin.action(description="Approve the selected scale actions")
def approve_selected(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    _decide(request, queryset, action_functions.approve_action, "approved")


@admin.action(description="Reject the selected scale actions")
def reject_selected(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    _decide(request, queryset, action_functions.reject_action, "rejected")


@admin.register(ScaleAction)
class ScaleActionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "variant",
        "from_replicas",
        "to_replicas",
        "state",
        "requested_by",
        "decided_by",
        "failure_reason",
    ]
    list_filter = ["state"]
    list_select_related = ["variant", "requested_by", "decided_by"]
    actions = [approve_selected, reject_selected]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_actions(request.user)

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        # Admin actions need change permission to show. Each one still goes
        # through the action functions' own checks, and no field is editable.
        return obj is None and request.user.is_active and request.user.is_staff


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "verb", "object_type", "object_id", "message"]
    list_filter = ["verb", "object_type"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return access.visible_audit(request.user)


@admin.register(VariantState)
class VariantStateAdmin(ReadOnlyAdmin):
    list_display = [
        "variant",
        "updated_at",
        "current_replicas",
        "desired_replicas",
        "degraded",
    ]
    list_select_related = ["variant"]


@admin.register(CycleLock)
class CycleLockAdmin(ReadOnlyAdmin):
    list_display = ["name", "holder", "expires_at"]
