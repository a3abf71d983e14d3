"""Options of a policy comparison run and their input check.

The page form and the REST API pass their raw values to `parse_options`,
which returns a `ComparisonOptions` or raises `InvalidOptions` with one
message per field. Every message names the rejected value, with `null`,
`true` and `false` as JSON writes them, and the accepted range or choices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from fleetsim.compare import DEFAULT_FLEET, POLICY_NAMES, CompareOptions
from fleetsim.trace import SCALE_MODES as FLEETSIM_SCALE_MODES
from fleetsim.trace import TRACE_FILES
from wva_web.simulate import conf

TRACES = tuple(TRACE_FILES)
SCALE_MODES = tuple(FLEETSIM_SCALE_MODES)
POLICIES = tuple(POLICY_NAMES)
# One-line description of each policy for the form, from the policy table in
# fleetsim/README.md.
POLICY_DESCRIPTIONS = {
    "hpa-kv": (
        "Kubernetes HPA per variant on the one-minute peak of KV-cache usage "
        "(target 0.6)"
    ),
    "hpa-queue": (
        "Kubernetes HPA per variant on the one-minute peak of waiting requests "
        "(target 4)"
    ),
    "static-peak": (
        "fixed fleet: the cheapest allocation that covers the trace's busiest "
        "60 s, never scaled"
    ),
    "wva-v1": (
        "saturation policy: one replica at a time, on KV-cache usage and waiting "
        "requests"
    ),
    "wva": (
        "demand from completions and the growth of waiting and running requests, "
        "forecast one start-up delay ahead"
    ),
    "oracle": (
        "reads the future trace and sizes for the busiest 60 s ahead: a reference, "
        "not a policy one could run"
    ),
}
MIN_DURATION_S = 60.0
# Largest seed: numpy's and Python's generators both take 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
# Floats store every integer up to 2**53 exactly. `format_number` prints whole
# floats below this as integers, others by repr (exponent form from 1e16 on).
MAX_EXACT_INTEGER = 2.0**53
OPTION_NAMES = (
    "trace",
    "scale",
    "scale_mode",
    "fleet",
    "policies",
    "seed",
    "duration_s",
)

DEFAULT_TRACE = CompareOptions.trace
DEFAULT_SCALE = CompareOptions.scale
DEFAULT_SCALE_MODE = CompareOptions.scale_mode
DEFAULT_SEED = CompareOptions.seed
DEFAULT_DURATION_S = 600.0


@dataclass(frozen=True)
class ComparisonOptions:
    """Checked options. `fleet` is a file name in `data/`, empty for the default."""

    trace: str = DEFAULT_TRACE
    scale: float = DEFAULT_SCALE
    scale_mode: str = DEFAULT_SCALE_MODE
    fleet: str = ""
    policies: tuple[str, ...] = POLICIES
    seed: int = DEFAULT_SEED
    duration_s: float = DEFAULT_DURATION_S

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["policies"] = list(self.policies)
        return data


@dataclass
class InvalidOptions(ValueError):
    """Rejected options: one or more messages per field name."""

    errors: dict[str, list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(
            message for messages in self.errors.values() for message in messages
        )


def fleet_dir() -> Path:
    return Path(settings.BASE_DIR) / "data"


def fleet_files() -> list[str]:
    """Return the fleet files a run may name, sorted.

    These are the files `data/*fleet*.json` whose JSON object lists
    `variants` and `service_classes`, as the fleet simulator's comparison
    needs.
    """
    names = []
    for path in sorted(fleet_dir().glob("*fleet*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and "variants" in raw and "service_classes" in raw:
            names.append(path.name)
    return names


def fleet_path(name: str) -> Path | None:
    """Return the path of a checked fleet file name, or None for the default."""
    return fleet_dir() / name if name else None


def parse_options(raw: Mapping[str, Any]) -> ComparisonOptions:
    """Check raw option values and return them as `ComparisonOptions`.

    A missing key or a blank string, which the form sends for an empty
    field, takes the default. A `None` value (JSON null) is rejected instead
    of read as the default. Raises `InvalidOptions` naming every rejected
    value.
    """
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name, check in CHECKS.items():
        if name not in raw:
            continue
        value = raw[name]
        if value is None:
            errors[name] = [_null_message(name)]
            continue
        if _is_blank(value):
            continue
        try:
            values[name] = check(value)
        except ValueError as exc:
            errors[name] = [str(exc)]
    if errors:
        raise InvalidOptions(errors)
    return ComparisonOptions(**values)


def reject_unknown(raw: Mapping[str, Any]) -> None:
    """Raise `InvalidOptions` when `raw` has a key that is no option name."""
    unknown = sorted(str(key) for key in raw if key not in OPTION_NAMES)
    if unknown:
        raise InvalidOptions(
            {
                name: [f"unknown option {name!r}: use {', '.join(OPTION_NAMES)}"]
                for name in unknown
            }
        )


def _is_blank(value: Any) -> bool:
    """Return True for a blank string. An empty policy list is a value, not blank."""
    return isinstance(value, str) and not value.strip()


def _null_message(name: str) -> str:
    kind, default = NULL_HINTS[name]
    return (
        f"{name} is null: send {kind}, or leave {name} out for the default, {default}"
    )


def check_trace(value: Any) -> str:
    return _choice("trace", value, TRACES)


def check_scale_mode(value: Any) -> str:
    return _choice("scale mode", value, SCALE_MODES)


def check_fleet(value: Any) -> str:
    names = fleet_files()
    text = str(value).strip()
    if text not in names:
        raise ValueError(
            f"fleet file {text!r} is not in data/: choose one of "
            f"{', '.join(names) or '(none found)'}, or leave it empty for "
            "the default fleet"
        )
    return text


def check_scale(value: Any) -> float:
    scale = _number("scale", value)
    limit = conf.max_scale()
    if not 0 < scale <= limit:
        raise ValueError(
            f"scale {_format_input(value, scale)} is out of range: use a factor "
            f"above 0 and at most {format_number(limit)}"
        )
    return scale


def check_duration(value: Any) -> float:
    duration = _number("duration", value)
    limit = conf.max_duration_s()
    if not MIN_DURATION_S <= duration <= limit:
        raise ValueError(
            f"duration {_format_input(value, duration)} s is out of range: use "
            f"{format_number(MIN_DURATION_S)} to {format_number(limit)} s"
        )
    return duration


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"seed {_format_value(value)} is not an integer")
    try:
        seed = int(str(value).strip())
    except ValueError:
        raise ValueError(f"seed {_format_value(value)} is not an integer") from None
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} is out of range: use 0 to {MAX_SEED}")
    return seed


def check_policies(value: Any) -> tuple[str, ...]:
    """Return the named policies in the order of `POLICIES`, without repeats."""
    if isinstance(value, str):
        names = [name.strip() for name in value.split(",") if name.strip()]
    elif isinstance(value, Sequence):
        names = [str(name).strip() for name in value]
    else:
        raise ValueError(
            f"policies {_format_value(value)} is not a list: send a list or a "
            f"comma-separated string of {', '.join(POLICIES)}"
        )
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(
            f"unknown polic{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(repr(name) for name in unknown)}: choose from "
            f"{', '.join(POLICIES)}"
        )
    if not names:
        raise ValueError(
            f"no policy selected: choose at least one of {', '.join(POLICIES)}"
        )
    return tuple(name for name in POLICIES if name in names)


def _choice(label: str, value: Any, choices: Sequence[str]) -> str:
    text = str(value).strip()
    if text not in choices:
        raise ValueError(
            f"unknown {label} {text!r}: choose one of {', '.join(choices)}"
        )
    return text


def _number(label: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{label} {_format_value(value)} is not a number")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{label} {_format_value(value)} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{label} {_format_value(value)} is not a finite number")
    return number


def _format_value(value: Any) -> str:
    """Format a rejected value: None and booleans as JSON writes them, else repr."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return repr(value)


def _format_input(value: Any, number: float) -> str:
    """Format a number as the request sent it: the stripped text or the integer."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        return str(value)
    return format_number(number)


def format_number(number: float) -> str:
    """Format a whole number as an integer (99999999, not 1e+08), others by repr."""
    if number.is_integer() and abs(number) < MAX_EXACT_INTEGER:
        return str(int(number))
    return repr(number)


# Expected kind of value and default of each option, for the message on a JSON null.
NULL_HINTS = {
    "trace": ("a trace name", DEFAULT_TRACE),
    "scale": ("a number", format_number(DEFAULT_SCALE)),
    "scale_mode": ("a scale mode", DEFAULT_SCALE_MODE),
    "fleet": ("a fleet file name", DEFAULT_FLEET.name),
    "policies": ("a list of policy names", "all of them"),
    "seed": ("an integer", str(DEFAULT_SEED)),
    "duration_s": ("a number of seconds", f"{format_number(DEFAULT_DURATION_S)} s"),
}

CHECKS = {
    "trace": check_trace,
    "scale": check_scale,
    "scale_mode": check_scale_mode,
    "fleet": check_fleet,
    "policies": check_policies,
    "seed": check_seed,
    "duration_s": check_duration,
}
