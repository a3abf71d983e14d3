"""Forms of the pages: override, reject and manual scale requests."""

from __future__ import annotations

from django import forms

# An override pins a variant for at most one week.
MAX_PIN_MINUTES = 7 * 24 * 60


class OverrideForm(forms.Form):
    replicas = forms.IntegerField(min_value=0, label="Replicas")
    duration_min = forms.IntegerField(
        min_value=1,
        max_value=MAX_PIN_MINUTES,
        required=False,
        label="Pin for (minutes)",
        help_text="Empty: until the next decision.",
    )

    def duration_s(self) -> float | None:
        minutes = self.cleaned_data.get("duration_min")
        return None if minutes is None else float(minutes * 60)


class RejectForm(forms.Form):
    message = forms.CharField(max_length=500, required=False, label="Reason")


class ManualScaleForm(forms.Form):
    to_replicas = forms.IntegerField(min_value=0, label="Replicas")
