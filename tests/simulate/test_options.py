"""The input check of comparison options: defaults, and messages naming the value."""

from __future__ import annotations

from typing import Any

import pytest

from wva_web.simulate.options import (
    POLICIES,
    ComparisonOptions,
    InvalidOptions,
    parse_options,
    reject_unknown,
)


def errors_of(raw: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(InvalidOptions) as caught:
        parse_options(raw)
    return caught.value.errors


def test_options_defaults_when_empty() -> None:
    options = parse_options({})
    assert options == ComparisonOptions()
    assert options.policies == POLICIES


def test_options_parse_text_values() -> None:
    options = parse_options(
        {
            "trace": "mooncake-conv",
            "scale": "2.5",
            "scale_mode": "compress",
            "policies": "wva, hpa-kv,wva",
            "seed": "7",
            "duration_s": "120",
        }
    )
    assert options.trace == "mooncake-conv"
    assert options.scale == 2.5
    assert options.scale_mode == "compress"
    assert options.policies == ("hpa-kv", "wva")
    assert options.seed == 7
    assert options.duration_s == 120.0


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"trace": "azure-chat"}, "trace", "unknown trace 'azure-chat'"),
        ({"scale": "0"}, "scale", "scale 0 is out of range"),
        ({"scale": "-1"}, "scale", "scale -1 is out of range"),
        ({"scale": "11"}, "scale", "scale 11 is out of range"),
        ({"scale": "lots"}, "scale", "scale 'lots' is not a number"),
        ({"scale": "nan"}, "scale", "scale 'nan' is not a finite number"),
        ({"scale": True}, "scale", "scale True is not a number"),
        ({"scale_mode": "stretch"}, "scale_mode", "unknown scale mode 'stretch'"),
        ({"policies": ["wva", "keda"]}, "policies", "unknown policy 'keda'"),
        ({"policies": []}, "policies", "no policy selected"),
        ({"policies": 5}, "policies", "policies 5 is not a list"),
        ({"seed": "1.5"}, "seed", "seed '1.5' is not an integer"),
        ({"seed": -1}, "seed", "seed -1 is out of range"),
        ({"duration_s": "30"}, "duration_s", "duration 30 s is out of range"),
        ({"duration_s": 7200}, "duration_s", "duration 7200 s is out of range"),
        ({"fleet": "../settings.py"}, "fleet", "fleet file '../settings.py'"),
        ({"fleet": "accelerators.csv"}, "fleet", "fleet file 'accelerators.csv'"),
    ],
)
def test_options_reject_value(raw: dict[str, Any], field: str, message: str) -> None:
    errors = errors_of(raw)
    assert list(errors) == [field]
    assert errors[field][0].startswith(message), errors[field][0]


def test_options_scale_limit_from_settings(settings: Any) -> None:
    settings.WVA_COMPARE_MAX_SCALE = 20
    assert parse_options({"scale": "15"}).scale == 15.0
    assert "at most 20" in errors_of({"scale": "21"})["scale"][0]


def test_options_list_every_bad_field() -> None:
    errors = errors_of({"trace": "x", "scale": "0", "seed": "s"})
    assert sorted(errors) == ["scale", "seed", "trace"]


def test_options_fleet_file_in_data() -> None:
    assert parse_options({"fleet": "compare_fleet.json"}).fleet == "compare_fleet.json"


def test_options_reject_unknown_key() -> None:
    with pytest.raises(InvalidOptions) as caught:
        reject_unknown({"trace": "azure-conv", "replicas": 3})
    assert caught.value.errors == {
        "replicas": [
            "unknown option 'replicas': use trace, scale, scale_mode, fleet, "
            "policies, seed, duration_s"
        ]
    }
