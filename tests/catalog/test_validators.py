"""Field validators of the catalogue, on plain values."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from wva_web.catalog.validators import (
    FiniteNumber,
    LabelText,
    at_most,
    hpa_metrics_error,
    profile_error,
)


@pytest.mark.parametrize(
    "text", ["a\u0085b", "a\u202eb", "a\u200bb", "a\u2028b", "a\u2029b", "a\nb"]
)
def test_label_text_rejects_invisible(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        LabelText("vendor")(text)
    assert caught.value.messages[0].startswith("vendor must not contain")


@pytest.mark.parametrize("text", ["H100-80GB", "Gaudi 3", "Köln", "模型-1"])
def test_label_text_accepts_printable(text: str) -> None:
    assert LabelText("name")(text) is None


def test_label_text_names_position() -> None:
    with pytest.raises(ValidationError) as caught:
        LabelText("name")("abc\u202e")
    assert "found U+202E at position 3" in caught.value.messages[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_finite_number_rejects(value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        FiniteNumber("ttft_ms")(value)
    assert caught.value.messages[0].startswith("ttft_ms must be a finite number")


def test_at_most_message_has_separators() -> None:
    with pytest.raises(ValidationError) as caught:
        at_most(3_600_000, "ttft_ms", "ms")(3_600_001)
    assert caught.value.messages == ["ttft_ms must be at most 3,600,000 ms"]


def test_hpa_metrics_valid() -> None:
    metrics = [
        {"metric": "kv_cache_usage", "target_average_value": 0.6},
        {"metric": "num_requests_waiting", "target_average_value": 4},
    ]
    assert hpa_metrics_error(metrics) is None


@pytest.mark.parametrize(
    ("metrics", "text"),
    [
        ({"metric": "kv_cache_usage"}, "must be a list"),
        ([{"metric": "kv_cache_usage"}], "exactly the keys"),
        ([{"metric": 5, "target_average_value": 1}], "unknown metric 5"),
        (
            [{"metric": "num_requests_waiting", "target_average_value": 10**400}],
            "got a number of 401 digits",
        ),
        (
            [{"metric": "num_requests_waiting", "target_average_value": float("nan")}],
            "must be a finite number",
        ),
        ([{"metric": "kv_cache_usage", "target_average_value": 60}], "Use 0.6"),
    ],
)
def test_hpa_metrics_invalid(metrics: object, text: str) -> None:
    message = hpa_metrics_error(metrics)
    assert message is not None
    assert text in message


def test_profile_empty_valid() -> None:
    assert profile_error({}) is None


@pytest.mark.parametrize(
    ("profile", "text"),
    [
        ([], "must be an object"),
        ({"alpha": float("nan")}, "alpha must be a finite number"),
        ({"kv_tokens": -1}, "kv_tokens must be at least 0"),
        ({"kv_tokens": True}, "kv_tokens must be a number"),
        ({"kv_tokens": 2e9}, "kv_tokens must be at most 1,000,000,000"),
        ({"block_size": 16.5}, "block_size must be a whole number"),
        ({"max_num_seqs": 0}, "max_num_seqs must be at least 1"),
        ({"gpu_util": 0.9}, "unknown key 'gpu_util'"),
        ({"gamma": 20.0}, "alpha is required when gamma is set"),
    ],
)
def test_profile_invalid(profile: object, text: str) -> None:
    message = profile_error(profile)
    assert message is not None
    assert text in message
