"""The input check of comparison options: defaults, and messages naming the value."""

from __future__ import annotations

from typing import Any

import pytest

from wva_web.simulate.options import (
    POLICIES,
    POLICY_DESCRIPTIONS,
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
        ({"scale": True}, "scale", "scale true is not a number"),
        ({"scale": False}, "scale", "scale false is not a number"),
        ({"duration_s": True}, "duration_s", "duration true is not a number"),
        ({"seed": True}, "seed", "seed true is not an integer"),
        ({"policies": False}, "policies", "policies false is not a list"),
        ({"scale_mode": "stretch"}, "scale_mode", "unknown scale mode 'stretch'"),
        ({"policies": ["wva", "keda"]}, "policies", "unknown policy 'keda'"),
        ({"policies": []}, "policies", "no policy selected"),
        ({"policies": 5}, "policies", "policies 5 is not a list"),
        ({"seed": "1.5"}, "seed", "seed '1.5' is not an integer"),
        ({"seed": -1}, "seed", "seed -1 is out of range"),
        ({"duration_s": "30"}, "duration_s", "duration 30 s is out of range"),
        ({"duration_s": 7200}, "duration_s", "duration 7200 s is out of range"),
        (
            {"duration_s": 99999999},
            "duration_s",
            "duration 99999999 s is out of range",
        ),
        (
            {"duration_s": 99999999.0},
            "duration_s",
            "duration 99999999 s is out of range",
        ),
        ({"duration_s": "1e8"}, "duration_s", "duration 1e8 s is out of range"),
        ({"duration_s": 30.5}, "duration_s", "duration 30.5 s is out of range"),
        ({"scale": 12345678901234567890}, "scale", "scale 12345678901234567890 is"),
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


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            "scale",
            "scale is null: send a number, or leave scale out for the default, 1",
        ),
        (
            "duration_s",
            "duration_s is null: send a number of seconds, or leave duration_s "
            "out for the default, 600 s",
        ),
        (
            "seed",
            "seed is null: send an integer, or leave seed out for the default, 1",
        ),
        ("trace", "trace is null: send a trace name"),
        ("scale_mode", "scale_mode is null: send a scale mode"),
        ("fleet", "fleet is null: send a fleet file name"),
        ("policies", "policies is null: send a list of policy names"),
    ],
)
def test_options_reject_null(field: str, message: str) -> None:
    errors = errors_of({field: None})
    assert list(errors) == [field]
    assert errors[field][0].startswith(message), errors[field][0]


def test_options_blank_string_takes_default() -> None:
    options = parse_options({"scale": "", "seed": " ", "duration_s": "", "fleet": ""})
    assert options == ComparisonOptions()


def test_options_limit_shown_as_integer(settings: Any) -> None:
    settings.WVA_COMPARE_MAX_DURATION_S = 100_000_000
    message = errors_of({"duration_s": 200_000_000})["duration_s"][0]
    assert message == "duration 200000000 s is out of range: use 60 to 100000000 s"


def test_policy_descriptions_cover_policies() -> None:
    assert set(POLICY_DESCRIPTIONS) == set(POLICIES)
    assert "future trace" in POLICY_DESCRIPTIONS["oracle"]
    assert "reference" in POLICY_DESCRIPTIONS["oracle"]
