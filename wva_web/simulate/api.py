"""REST endpoint of comparison runs: /api/v1/comparisons/.

GET lists and retrieves runs for any signed-in user; the result JSON comes
with a single run, or on lists with `?expand=1`. POST starts a run and needs
the operator role in some team, checked before the body is read. The body
goes through `parse_options`, so the API and the page give the same
messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from wva_web.api.serializers import Conflict
from wva_web.api.views import PagedMixin
from wva_web.simulate import runs
from wva_web.simulate.models import ComparisonPlot, ComparisonRun
from wva_web.simulate.options import (
    DEFAULT_DURATION_S,
    DEFAULT_SCALE,
    DEFAULT_SCALE_MODE,
    DEFAULT_SEED,
    DEFAULT_TRACE,
    POLICIES,
    SCALE_MODES,
    TRACES,
    InvalidOptions,
    parse_options,
    reject_unknown,
)


class StartComparisonRole(BasePermission):
    """Starting a run needs the operator role in some team."""

    message = "starting a comparison needs the operator role in a team"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return runs.can_start(request.user)


class ComparisonOptionsSerializer(serializers.Serializer):
    """Options of a new run.

    Every field may be left out for its default, but a JSON null is
    rejected with a 400 that names the field.
    """

    trace = serializers.CharField(
        required=False, help_text=f"one of {', '.join(TRACES)}; {DEFAULT_TRACE}"
    )
    scale = serializers.FloatField(
        required=False,
        help_text=f"load scale factor above 0; {DEFAULT_SCALE:g} by default",
    )
    scale_mode = serializers.CharField(
        required=False,
        help_text=f"one of {', '.join(SCALE_MODES)}; {DEFAULT_SCALE_MODE}",
    )
    fleet = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="a fleet file name in data/; empty for the default fleet",
    )
    policies = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text=f"a subset of {', '.join(POLICIES)}; all by default",
    )
    seed = serializers.IntegerField(
        required=False, help_text=f"random seed; {DEFAULT_SEED} by default"
    )
    duration_s = serializers.FloatField(
        required=False,
        help_text=f"seconds of trace to replay; {DEFAULT_DURATION_S:g} by default",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise exceptions.ValidationError(
                {"non_field_errors": ["send the options as a JSON object"]}
            )
        raw = {key: _single(data, key) for key in data}
        try:
            reject_unknown(raw)
            options = parse_options(raw)
        except InvalidOptions as exc:
            raise exceptions.ValidationError(exc.errors) from exc
        return {"options": options}


def _single(data: Mapping[str, Any], key: str) -> Any:
    """Return one value of the body, and `policies` as a list in a form body."""
    getlist = getattr(data, "getlist", None)
    if getlist is not None and key == "policies":
        return getlist(key)
    return data[key]


class ComparisonRunSerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    plots = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField()

    class Meta:
        model = ComparisonRun
        fields = [
            "id",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "status",
            "progress",
            "progress_message",
            "options",
            "error",
            "result",
            "plots",
            "page",
        ]
        read_only_fields = fields

    def get_created_by(self, run: ComparisonRun) -> str | None:
        return run.created_by.get_username() if run.created_by else None

    def get_result(self, run: ComparisonRun) -> dict[str, Any] | None:
        """Return the result JSON on detail routes and expanded lists only."""
        if not self.context.get("expand"):
            return None
        return run.result

    def get_plots(self, run: ComparisonRun) -> list[str]:
        return [
            self._absolute(reverse("simulate:run-plot", args=[run.pk, plot.name]))
            for plot in run.plots.all()
        ]

    def get_page(self, run: ComparisonRun) -> str:
        return self._absolute(reverse("simulate:run-detail", args=[run.pk]))

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class ComparisonRunViewSet(
    PagedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Policy comparison runs. POST starts one on the comparison queue."""

    serializer_class = ComparisonRunSerializer
    permission_classes = [
        *viewsets.GenericViewSet.permission_classes,
        StartComparisonRole,
    ]
    filterset_fields = ["status"]

    def get_queryset(self) -> QuerySet[ComparisonRun]:
        queryset = (
            runs.visible_runs(self.request.user)
            .select_related("created_by")
            .prefetch_related(
                Prefetch("plots", queryset=ComparisonPlot.objects.names())
            )
        )
        if not self.wants_expanded():
            queryset = queryset.defer("result")
        return queryset.order_by("-created_at", "-id")

    @extend_schema(
        request=ComparisonOptionsSerializer,
        responses={201: ComparisonRunSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        options_serializer = ComparisonOptionsSerializer(data=request.data)
        options_serializer.is_valid(raise_exception=True)
        options = options_serializer.validated_data["options"]
        try:
            run = runs.start_run(request.user, options)
        except runs.RunForbidden as exc:
            raise exceptions.PermissionDenied(str(exc)) from exc
        except runs.RunLimitReached as exc:
            raise Conflict(str(exc)) from exc
        body = self.get_serializer(run).data
        return Response(body, status=status.HTTP_201_CREATED)
