"""Filter sets of the list endpoints (django-filter).

Ids are plain numbers: the base querysets are already scoped, so an id of
another team's row matches nothing instead of raising a validation error
that would confirm it exists.
"""

from __future__ import annotations

import django_filters as filters
from django.db.models import QuerySet

from wva_web.catalog.models import Variant
from wva_web.control.models import (
    ActionState,
    AuditLog,
    ControlCycle,
    CycleStatus,
    Decision,
    MetricSample,
    SampleStatus,
    ScaleAction,
)


class VariantFilter(filters.FilterSet):
    model = filters.NumberFilter(field_name="model_id")
    accelerator = filters.CharFilter(method="filter_accelerator")
    team = filters.NumberFilter(field_name="model__team_id")

    class Meta:
        model = Variant
        fields = ["model", "accelerator", "team", "mode", "namespace"]

    def filter_accelerator(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return _by_accelerator(queryset, "accelerator", value)


def _by_accelerator(queryset: QuerySet, path: str, value: str) -> QuerySet:
    """Filter by accelerator id or name."""
    if value.isdigit():
        return queryset.filter(**{f"{path}_id": int(value)})
    return queryset.filter(**{f"{path}__name": value})


class ScaleActionFilter(filters.FilterSet):
    variant = filters.NumberFilter(field_name="variant_id")
    model = filters.NumberFilter(field_name="variant__model_id")
    accelerator = filters.CharFilter(method="filter_accelerator")
    state = filters.MultipleChoiceFilter(choices=ActionState.choices)
    created_after = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte"
    )
    created_before = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt"
    )

    class Meta:
        model = ScaleAction
        fields = ["variant", "model", "accelerator", "state"]

    def filter_accelerator(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return _by_accelerator(queryset, "variant__accelerator", value)


class DecisionFilter(filters.FilterSet):
    variant = filters.NumberFilter(field_name="variant_id")
    model = filters.NumberFilter(field_name="variant__model_id")
    cycle = filters.NumberFilter(field_name="cycle_id")
    accelerator = filters.CharFilter(method="filter_accelerator")
    bound_by = filters.CharFilter()
    started_after = filters.IsoDateTimeFilter(
        field_name="cycle__started_at", lookup_expr="gte"
    )
    started_before = filters.IsoDateTimeFilter(
        field_name="cycle__started_at", lookup_expr="lt"
    )

    class Meta:
        model = Decision
        fields = ["variant", "model", "cycle", "accelerator", "bound_by"]

    def filter_accelerator(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return _by_accelerator(queryset, "variant__accelerator", value)


class MetricSampleFilter(filters.FilterSet):
    variant = filters.NumberFilter(field_name="variant_id")
    model = filters.NumberFilter(field_name="variant__model_id")
    cycle = filters.NumberFilter(field_name="cycle_id")
    status = filters.MultipleChoiceFilter(choices=SampleStatus.choices)
    sampled_after = filters.IsoDateTimeFilter(
        field_name="sampled_at", lookup_expr="gte"
    )
    sampled_before = filters.IsoDateTimeFilter(
        field_name="sampled_at", lookup_expr="lt"
    )

    class Meta:
        model = MetricSample
        fields = ["variant", "model", "cycle", "status", "pod"]


class ControlCycleFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=CycleStatus.choices)
    started_after = filters.IsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte"
    )
    started_before = filters.IsoDateTimeFilter(
        field_name="started_at", lookup_expr="lt"
    )

    class Meta:
        model = ControlCycle
        fields = ["status", "policy"]


class AuditLogFilter(filters.FilterSet):
    at_after = filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    at_before = filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditLog
        fields = ["verb", "object_type", "object_id"]
