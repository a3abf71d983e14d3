"""Viewsets of the REST API under /api/v1/.

Every queryset comes from `wva_web.catalog.access`, scoped to the user's
teams before any handler runs. State changes of scale actions go through
`wva_web.control.actions`. The views only translate its errors into HTTP
responses (404, 403, 409, 400). Catalogue writes also write an audit row
(`wva_web.catalog.audit`) in the same transaction. Lists take `?page_size=`
(at most 200) and, for cycles and decisions, `?expand=1` to include the
large JSON fields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Model, Prefetch, ProtectedError, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from wva_web.api import filters, pagination, permissions, serializers
from wva_web.catalog import access, audit, deletion
from wva_web.catalog.models import Accelerator, ServiceClass
from wva_web.control import actions
from wva_web.control.models import ScaleAction

logger = logging.getLogger(__name__)


def call_action(
    function: Callable[..., ScaleAction], *args: Any, **kwargs: Any
) -> ScaleAction:
    """Run an action function and turn its errors into API errors."""
    try:
        return function(*args, **kwargs)
    except actions.ActionNotFound as exc:
        raise exceptions.NotFound(str(exc)) from exc
    except actions.ActionConflict as exc:
        raise serializers.Conflict(str(exc)) from exc
    except actions.ActionInvalid as exc:
        raise exceptions.ValidationError({exc.field: [exc.message]}) from exc
    except actions.ActionForbidden as exc:
        raise exceptions.PermissionDenied(str(exc)) from exc


EXPAND_VALUES = ("1", "true", "yes")


class PagedMixin:
    """Page sizes up to 200 with `?page_size=`, and `?expand=1` on lists."""

    pagination_class = pagination.ConsolePagination

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()  # type: ignore[misc]
        context["expand"] = self.wants_expanded()
        return context

    def wants_expanded(self) -> bool:
        """Return True on detail routes and on lists with `?expand=1`."""
        if getattr(self, "action", None) != "list":
            return True
        request = self.request  # type: ignore[attr-defined]
        value = request.query_params.get("expand", "")
        return value.lower() in EXPAND_VALUES


class AtomicWriteMixin:
    """Save and audit in one transaction; return 409 for a unique or protected row."""

    def perform_create(self, serializer: BaseSerializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer: BaseSerializer) -> None:
        self._save(serializer)

    def perform_destroy(self, instance: Model) -> None:
        before = audit.snapshot(instance)
        kind, object_id, label = audit.object_type(instance), instance.pk, str(instance)
        try:
            with transaction.atomic():
                instance.delete()
                audit.record_delete(self._actor(), kind, object_id, label, before)
        except deletion.VariantHistoryProtected as exc:
            raise serializers.Conflict(exc.args[0]) from exc
        except ProtectedError as exc:
            raise serializers.Conflict(
                f"{instance} is still used by {len(exc.protected_objects)} row(s)"
            ) from exc

    def _actor(self) -> Any:
        return self.request.user  # type: ignore[attr-defined]

    def _save(self, serializer: BaseSerializer) -> None:
        stored = serializer.instance
        before = audit.snapshot(stored) if stored is not None else None
        try:
            with transaction.atomic():
                saved = serializer.save()
                if before is None:
                    audit.record_create(self._actor(), saved)
                else:
                    audit.record_update(self._actor(), saved, before)
        except IntegrityError as exc:
            logger.info("write rejected by a database constraint: %s", exc)
            raise serializers.Conflict(
                "another request saved a conflicting row first (same name or "
                "same workload). Reload and try again"
            ) from exc


class TeamViewSet(PagedMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.TeamSerializer

    def get_queryset(self) -> QuerySet:
        return access.visible_teams(self.request.user).order_by("name")


class AcceleratorViewSet(PagedMixin, AtomicWriteMixin, viewsets.ModelViewSet):
    serializer_class = serializers.AcceleratorSerializer
    permission_classes = [
        *viewsets.ModelViewSet.permission_classes,
        permissions.GlobalCatalogueWrite,
    ]
    queryset = Accelerator.objects.all()
    filterset_fields = ["vendor", "name"]


class ServiceClassViewSet(PagedMixin, AtomicWriteMixin, viewsets.ModelViewSet):
    serializer_class = serializers.ServiceClassSerializer
    permission_classes = [
        *viewsets.ModelViewSet.permission_classes,
        permissions.GlobalCatalogueWrite,
    ]
    queryset = ServiceClass.objects.all()
    filterset_fields = ["kind", "priority"]


class InferenceModelViewSet(PagedMixin, AtomicWriteMixin, viewsets.ModelViewSet):
    serializer_class = serializers.InferenceModelSerializer
    permission_classes = [
        *viewsets.ModelViewSet.permission_classes,
        permissions.TeamCatalogueWrite,
    ]
    filterset_fields = ["team", "service_class", "policy"]

    def get_queryset(self) -> QuerySet:
        return access.visible_models(self.request.user).select_related("team")


class VariantViewSet(PagedMixin, AtomicWriteMixin, viewsets.ModelViewSet):
    serializer_class = serializers.VariantSerializer
    permission_classes = [
        *viewsets.ModelViewSet.permission_classes,
        permissions.TeamCatalogueWrite,
    ]
    filterset_class = filters.VariantFilter

    def get_queryset(self) -> QuerySet:
        return access.visible_variants(self.request.user).select_related(
            "model__team", "accelerator", "state"
        )

    def perform_destroy(self, instance: Model) -> None:
        """Reject with 409 a delete that would erase scale actions or decisions."""
        message = deletion.delete_error(instance)
        if message is not None:
            raise serializers.Conflict(message)
        super().perform_destroy(instance)


class ScaleActionViewSet(
    PagedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Scale actions. POST records a manual request, and the verbs decide one."""

    serializer_class = serializers.ScaleActionSerializer
    filterset_class = filters.ScaleActionFilter
    permission_classes = [
        *viewsets.GenericViewSet.permission_classes,
        permissions.ScaleActionRole,
    ]

    def get_queryset(self) -> QuerySet:
        return access.visible_actions(self.request.user).select_related(
            "variant__accelerator", "variant__model__team", "requested_by", "decided_by"
        )

    def check_decider(self) -> None:
        """Return 404 for an action the user cannot see and 403 without the role.

        Runs before the body is validated, so a viewer gets 403 for any body.
        """
        self.get_object()

    def get_serializer_class(self) -> type[BaseSerializer]:
        if self.action == "create":
            return serializers.ManualActionSerializer
        return serializers.ScaleActionSerializer

    def _respond(
        self, scale_action: ScaleAction, code: int = status.HTTP_200_OK
    ) -> Response:
        scale_action.refresh_from_db()
        body = serializers.ScaleActionSerializer(
            scale_action, context=self.get_serializer_context()
        ).data
        return Response(body, status=code)

    @extend_schema(
        request=serializers.ManualActionSerializer,
        responses={201: serializers.ScaleActionSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        payload = serializers.ManualActionSerializer(
            data=request.data, context=self.get_serializer_context()
        )
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        created = call_action(
            actions.request_manual_action,
            request.user,
            data["variant"],
            data["to_replicas"],
        )
        return self._respond(created, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: serializers.ScaleActionSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        self.check_decider()
        return self._respond(
            call_action(actions.approve_action, _action_id(pk), request.user)
        )

    @extend_schema(
        request=serializers.RejectSerializer,
        responses={200: serializers.ScaleActionSerializer},
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        self.check_decider()
        payload = serializers.RejectSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        message = payload.validated_data.get("message", "")
        rejected = call_action(
            actions.reject_action, _action_id(pk), request.user, message
        )
        return self._respond(rejected)

    @extend_schema(
        request=serializers.OverrideSerializer,
        responses={200: serializers.ScaleActionSerializer},
    )
    @action(detail=True, methods=["post"])
    def override(self, request: Request, pk: str | None = None) -> Response:
        self.check_decider()
        payload = serializers.OverrideSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        overridden = call_action(
            actions.override_action,
            _action_id(pk),
            request.user,
            data["replicas"],
            data.get("duration_s"),
        )
        return self._respond(overridden)


def _action_id(pk: str | None) -> int:
    if pk is None or not pk.isdigit():
        raise exceptions.NotFound(f"scale action {pk} not found")
    return int(pk)


class DecisionViewSet(PagedMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.DecisionSerializer
    filterset_class = filters.DecisionFilter

    def get_queryset(self) -> QuerySet:
        return access.visible_decisions(self.request.user).select_related("variant")


class ControlCycleViewSet(PagedMixin, viewsets.ReadOnlyModelViewSet):
    """Control cycles, each with the decisions the user may see."""

    serializer_class = serializers.ControlCycleSerializer
    filterset_class = filters.ControlCycleFilter

    def get_queryset(self) -> QuerySet:
        decisions = access.visible_decisions(self.request.user).select_related(
            "variant"
        )
        cycles = access.visible_cycles(self.request.user).prefetch_related(
            Prefetch("decisions", queryset=decisions, to_attr="visible_decisions")
        )
        if not self.wants_expanded():
            cycles = cycles.defer(*serializers.CYCLE_LARGE_FIELDS)
        return cycles


class MetricSampleViewSet(PagedMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.MetricSampleSerializer
    filterset_class = filters.MetricSampleFilter

    def get_queryset(self) -> QuerySet:
        return access.visible_samples(self.request.user)


class AuditLogViewSet(PagedMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.AuditLogSerializer
    filterset_class = filters.AuditLogFilter

    def get_queryset(self) -> QuerySet:
        return access.visible_audit(self.request.user).select_related("actor")
