"""Form of the comparison page. `parse_options` checks every value."""

from __future__ import annotations

from typing import Any

from django import forms

from wva_web.simulate import conf
from wva_web.simulate.options import (
    DEFAULT_DURATION_S,
    DEFAULT_SCALE,
    DEFAULT_SCALE_MODE,
    DEFAULT_SEED,
    DEFAULT_TRACE,
    MAX_SEED,
    MIN_DURATION_S,
    POLICIES,
    POLICY_DESCRIPTIONS,
    SCALE_MODES,
    TRACES,
    ComparisonOptions,
    InvalidOptions,
    fleet_files,
    format_number,
    parse_options,
)


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


def _help_text(accepted: str, default: str) -> str:
    return f"{accepted}. Empty means the default, {default}."


class ComparisonForm(forms.Form):
    """Options of a new run.

    The fields only render and collect text, and an empty field takes its
    default, which the number fields show as placeholder and help text.
    `clean` passes the values to `parse_options`, whose messages name the
    rejected value.
    """

    trace = forms.CharField(
        required=False,
        initial=DEFAULT_TRACE,
        widget=forms.Select(choices=_choices(TRACES)),
    )
    scale = forms.CharField(
        required=False,
        initial=format_number(DEFAULT_SCALE),
        widget=forms.NumberInput(
            attrs={
                "step": "any",
                "min": "0",
                "placeholder": format_number(DEFAULT_SCALE),
            }
        ),
    )
    scale_mode = forms.CharField(
        required=False,
        initial=DEFAULT_SCALE_MODE,
        widget=forms.Select(choices=_choices(SCALE_MODES)),
    )
    fleet = forms.CharField(required=False)
    policies = forms.Field(
        required=False,
        initial=list(POLICIES),
        widget=forms.CheckboxSelectMultiple(choices=_choices(POLICIES)),
    )
    seed = forms.CharField(
        required=False,
        initial=str(DEFAULT_SEED),
        help_text=_help_text(f"0 to {MAX_SEED}", str(DEFAULT_SEED)),
        widget=forms.NumberInput(attrs={"placeholder": str(DEFAULT_SEED)}),
    )
    duration_s = forms.CharField(
        required=False,
        label="Duration (s)",
        initial=f"{DEFAULT_DURATION_S:g}",
        widget=forms.NumberInput(
            attrs={"step": "any", "placeholder": format_number(DEFAULT_DURATION_S)}
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fleets = [("", "default fleet"), *_choices(tuple(fleet_files()))]
        self.fields["fleet"].widget = forms.Select(choices=fleets)
        # The limits come from settings, so they are read per form, not at import.
        max_scale = format_number(conf.max_scale())
        max_duration = format_number(conf.max_duration_s())
        scale = self.fields["scale"]
        scale.widget.attrs["max"] = max_scale
        scale.help_text = _help_text(
            f"Load factor above 0, at most {max_scale}", format_number(DEFAULT_SCALE)
        )
        duration = self.fields["duration_s"]
        duration.widget.attrs["min"] = f"{MIN_DURATION_S:g}"
        duration.widget.attrs["max"] = max_duration
        duration.help_text = _help_text(
            f"Seconds of scaled trace, {format_number(MIN_DURATION_S)} to "
            f"{max_duration}",
            format_number(DEFAULT_DURATION_S),
        )
        self.options: ComparisonOptions | None = None

    def policy_boxes(self) -> list[tuple[Any, str]]:
        """Return each policy checkbox with its one-line description."""
        return [
            (box, POLICY_DESCRIPTIONS.get(box.data["value"], ""))
            for box in self["policies"]
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        raw = dict(cleaned)
        # An unticked box list is an explicit empty selection, not a default.
        raw["policies"] = list(cleaned.get("policies") or [])
        try:
            self.options = parse_options(raw)
        except InvalidOptions as exc:
            for name, messages in exc.errors.items():
                for message in messages:
                    self.add_error(name if name in self.fields else None, message)
        return cleaned
