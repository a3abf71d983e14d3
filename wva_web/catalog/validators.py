"""Field validators of the catalogue, shared by the model, the admin and the API.

The model fields carry these validators, so `full_clean` runs them for the
admin forms and for the API serializers alike. Each message names the field.
Upper bounds keep derived numbers finite: the largest cost per replica-hour is
1000 USD * 64 GPUs, far from float overflow.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator
from django.utils.deconstruct import deconstructible

# Unicode categories rejected in text that reaches a label, a page title or a
# log line: control (Cc, e.g. U+0085), format (Cf, e.g. U+202E bidi override
# and U+200B zero-width space), line separator (Zl) and paragraph separator (Zp).
REJECTED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
FREE_TEXT_MAX_CHARS = 2000

# Per-pod metrics the HPA counterfactual understands, and whether the target
# is a fraction (0 to 1).
HPA_METRICS = {
    "kv_cache_usage": True,
    "num_requests_waiting": False,
    "num_requests_running": False,
}
HPA_METRIC_KEYS = frozenset({"metric", "target_average_value"})
# Largest HPA target: a per-pod average of waiting or running requests.
HPA_TARGET_MAX = 1_000_000

# Keys of a latency profile. Times are in ms (decode step alpha + beta * batch,
# prefill gamma + delta * input tokens * batch, ctx_per_1k per 1,000 context
# tokens), kv_tokens is the KV pool in tokens, and the rest are vLLM settings.
PROFILE_LATENCY_KEYS = ("alpha", "beta", "gamma", "delta")
PROFILE_NUMBER_KEYS = frozenset({*PROFILE_LATENCY_KEYS, "ctx_per_1k", "kv_tokens"})
PROFILE_INTEGER_KEYS = frozenset(
    {"num_gpu_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens"}
)
PROFILE_KEYS = PROFILE_NUMBER_KEYS | PROFILE_INTEGER_KEYS
PROFILE_AT_LEAST_ONE_KEYS = frozenset({"max_num_seqs", "max_num_batched_tokens"})
PROFILE_VALUE_MAX = 1e9


def first_rejected_character(text: str) -> tuple[int, str] | None:
    """Return the position and code point of the first rejected character."""
    for position, character in enumerate(text):
        if unicodedata.category(character) in REJECTED_CATEGORIES:
            return position, f"U+{ord(character):04X}"
    return None


@deconstructible
class LabelText:
    """Reject control, format and separator characters in one named text field."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, value: Any) -> None:
        if not isinstance(value, str):
            return
        found = first_rejected_character(value)
        if found is None:
            return
        position, code_point = found
        raise ValidationError(
            f"{self.field} must not contain control characters, format characters "
            f"(such as bidi overrides or zero-width spaces) or line separators: "
            f"found {code_point} at position {position}",
            code="invalid_character",
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelText) and other.field == self.field

    def __hash__(self) -> int:
        return hash(self.field)


@deconstructible
class FiniteNumber:
    """Reject NaN and infinity in one named number field."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, value: Any) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValidationError(
                f"{self.field} must be a finite number, got {value!r}",
                code="non_finite",
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FiniteNumber) and other.field == self.field

    def __hash__(self) -> int:
        return hash(self.field)


def format_limit(limit: float) -> str:
    """Format a bound with thousands separators: 3600000 as "3,600,000"."""
    if float(limit).is_integer():
        return f"{int(limit):,}"
    return f"{limit:,g}"


def at_most(limit: float, field: str, unit: str = "") -> MaxValueValidator:
    """Return an upper bound whose message names the field and the unit."""
    suffix = f" {unit}" if unit else ""
    message = f"{field} must be at most {format_limit(limit)}{suffix}"
    return MaxValueValidator(limit, message=message)


def free_text(field: str) -> MaxLengthValidator:
    return MaxLengthValidator(
        FREE_TEXT_MAX_CHARS,
        message=f"{field} must be at most {FREE_TEXT_MAX_CHARS} characters",
    )


def number_error(value: Any, limit: float) -> str | None:
    """Describe why a JSON value is not a finite number in [0, limit], or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, got {value!r}"
    try:
        as_float = float(value)
    except OverflowError:
        digits = len(str(value))
        return f"must be at most {format_limit(limit)}, got a number of {digits} digits"
    if not math.isfinite(as_float):
        return f"must be a finite number, got {value!r}"
    if as_float < 0:
        return f"must be at least 0, got {value!r}"
    if as_float > limit:
        return f"must be at most {format_limit(limit)}, got {value!r}"
    return None


def hpa_metrics_error(metrics: Any) -> str | None:
    """Describe the first invalid entry of `hpa_metrics`, or None when it is valid."""
    if not isinstance(metrics, list):
        return "must be a list of {metric, target_average_value} objects"
    known = ", ".join(sorted(HPA_METRICS))
    for index, entry in enumerate(metrics):
        if not isinstance(entry, dict) or set(entry) != HPA_METRIC_KEYS:
            return (
                f"entry {index} must have exactly the keys metric and "
                "target_average_value"
            )
        name, target = entry["metric"], entry["target_average_value"]
        if not isinstance(name, str) or name not in HPA_METRICS:
            return f"entry {index}: unknown metric {name!r}. Use one of {known}"
        if message := number_error(target, HPA_TARGET_MAX):
            return f"entry {index}: target_average_value {message}"
        if target == 0:
            return f"entry {index}: target_average_value must be above 0"
        if HPA_METRICS[name] and target > 1:
            return (
                f"entry {index}: {name} is a fraction. "
                f"Use {target / 100:g} for {target:g}%"
            )
    return None


def profile_error(profile: Any) -> str | None:
    """Describe the first invalid key of a latency profile, or None when it is valid."""
    if not isinstance(profile, dict):
        return 'must be an object such as {"alpha": 6.0, "beta": 0.05}'
    known = ", ".join(sorted(PROFILE_KEYS))
    for key, value in profile.items():
        if key not in PROFILE_KEYS:
            return f"unknown key {key!r}. Use one of {known}"
        if message := number_error(value, PROFILE_VALUE_MAX):
            return f"{key} {message}"
        if key in PROFILE_INTEGER_KEYS and not float(value).is_integer():
            return f"{key} must be a whole number, got {value!r}"
        if key in PROFILE_AT_LEAST_ONE_KEYS and value < 1:
            return f"{key} must be at least 1, or left out when unknown"
    present = [key for key in PROFILE_LATENCY_KEYS if key in profile]
    if present and len(present) < len(PROFILE_LATENCY_KEYS):
        missing = [key for key in PROFILE_LATENCY_KEYS if key not in profile]
        return (
            f"{missing[0]} is required when {present[0]} is set: a latency fit "
            "needs alpha, beta, gamma and delta"
        )
    return None


def validate_hpa_metrics(value: Any) -> None:
    if message := hpa_metrics_error(value):
        raise ValidationError(f"hpa_metrics {message}", code="invalid_hpa_metrics")


def validate_profile(value: Any) -> None:
    if message := profile_error(value):
        raise ValidationError(f"profile {message}", code="invalid_profile")
