"""Form of the comparison page. `parse_options` checks every value."""

from __future__ import annotations

from typing import Any

from django import forms

from wva_web.simulate import conf
from wva_web.simulate.options import (
    DEFAULT_DURATION_S,
    DEFAULT_SCALE_MODE,
    DEFAULT_SEED,
    DEFAULT_TRACE,
    MIN_DURATION_S,
    POLICIES,
    SCALE_MODES,
    TRACES,
    ComparisonOptions,
    InvalidOptions,
    fleet_files,
    parse_options,
)


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


class ComparisonForm(forms.Form):
    """Options of a new run.

    The fields only render and collect text, and an empty field takes its
    default. `clean` passes the values to `parse_options`, whose messages
    name the rejected value.
    """

    trace = forms.CharField(
        required=False,
        initial=DEFAULT_TRACE,
        widget=forms.Select(choices=_choices(TRACES)),
    )
    scale = forms.CharField(
        required=False,
        initial="1",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0"}),
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
        required=False, initial=str(DEFAULT_SEED), widget=forms.NumberInput()
    )
    duration_s = forms.CharField(
        required=False,
        label="Duration (s)",
        initial=f"{DEFAULT_DURATION_S:g}",
        widget=forms.NumberInput(attrs={"step": "any"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fleets = [("", "default fleet"), *_choices(tuple(fleet_files()))]
        self.fields["fleet"].widget = forms.Select(choices=fleets)
        self.fields["scale"].widget.attrs["max"] = f"{conf.max_scale():g}"
        duration = self.fields["duration_s"].widget.attrs
        duration["min"] = f"{MIN_DURATION_S:g}"
        duration["max"] = f"{conf.max_duration_s():g}"
        self.options: ComparisonOptions | None = None

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
