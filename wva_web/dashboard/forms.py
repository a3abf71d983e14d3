"""Forms of the pages: override, reject and manual scale requests.

Their limits come from the API's serializers, so a value the page accepts is
one the API accepts too. The override form takes minutes where the API takes
seconds.
"""

from __future__ import annotations

from django import forms

from wva_web.api.serializers import (
    ManualActionSerializer,
    OverrideSerializer,
    RejectSerializer,
)


def field_limit(serializer: type, field: str, limit: str) -> int:
    """Return a limit (max_length, min_value, max_value) of a serializer field."""
    value = getattr(serializer().fields[field], limit)
    if value is None:
        raise ValueError(f"{serializer.__name__}.{field} sets no {limit}")
    return int(value)


REJECT_MAX_LENGTH = field_limit(RejectSerializer, "message", "max_length")
MIN_REPLICAS = field_limit(OverrideSerializer, "replicas", "min_value")
MANUAL_MIN_REPLICAS = field_limit(ManualActionSerializer, "to_replicas", "min_value")
# Whole minutes that fit into the API's duration_s limit (one week).
MAX_PIN_MINUTES = field_limit(OverrideSerializer, "duration_s", "max_value") // 60


class OverrideForm(forms.Form):
    replicas = forms.IntegerField(min_value=MIN_REPLICAS, label="Replicas")
    duration_min = forms.IntegerField(
        min_value=1,
        max_value=MAX_PIN_MINUTES,
        required=False,
        label="Pin for (minutes)",
        help_text="Empty: not pinned, the next control cycle plans from this count.",
    )

    def duration_s(self) -> float | None:
        """Return the pin duration in seconds, the API's unit, or None."""
        minutes = self.cleaned_data.get("duration_min")
        return None if minutes is None else float(minutes * 60)


class RejectForm(forms.Form):
    message = forms.CharField(
        max_length=REJECT_MAX_LENGTH, required=False, label="Reason"
    )


class ManualScaleForm(forms.Form):
    to_replicas = forms.IntegerField(min_value=MANUAL_MIN_REPLICAS, label="Replicas")


def allowed_range(field: forms.Field, bounds: tuple[int, int] | None = None) -> str:
    """Describe the whole numbers a field takes, e.g. "a whole number from 1 to 8"."""
    low, high = bounds or (
        getattr(field, "min_value", None),
        getattr(field, "max_value", None),
    )
    if low is not None and high is not None:
        return f"a whole number from {low} to {high}"
    if low is not None:
        return f"a whole number of at least {low}"
    if high is not None:
        return f"a whole number of at most {high}"
    return "a whole number"


def error_text(
    form: forms.Form, bounds: dict[str, tuple[int, int]] | None = None
) -> str:
    """Describe each invalid field of a bound form with its value and allowed range.

    `bounds` gives a field's range where it is narrower than the form's own
    limits, such as a variant's min and max replicas. Example: 'replicas
    "2.5" is not valid: enter a whole number from 1 to 8'.
    """
    bounds = bounds or {}
    parts = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        value = str(form.data.get(name, "")).strip()
        if isinstance(field, forms.IntegerField):
            allowed = allowed_range(field, bounds.get(name))
            if value:
                parts.append(f'{name} "{value}" is not valid: enter {allowed}')
            else:
                parts.append(f"{name} is missing: enter {allowed}")
        elif isinstance(field, forms.CharField) and field.max_length is not None:
            parts.append(
                f"{name} has {len(value)} characters: enter at most {field.max_length}"
            )
        else:
            messages = " ".join(str(error) for error in errors)
            parts.append(f'{name} "{value}": {messages}')
    return "; ".join(parts)
