"""Options of a policy comparison run and their input check.

The page form and the REST API pass their raw values to `parse_options`,
which returns a `ComparisonOptions` or raises `InvalidOptions` with one
message per field. Every message names the rejected value and the accepted
range or choices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from fleetsim.compare import POLICY_NAMES, CompareOptions
from fleetsim.trace import SCALE_MODES as FLEETSIM_SCALE_MODES
from fleetsim.trace import TRACE_FILES
from wva_web.simulate import conf

TRACES = tuple(TRACE_FILES)
SCALE_MODES = tuple(FLEETSIM_SCALE_MODES)
POLICIES = tuple(POLICY_NAMES)
MIN_DURATION_S = 60.0
# Largest seed: numpy's and Python's generators both take 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
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
DEFAULT_SCALE_MODE = CompareOptions.scale_mode
DEFAULT_SEED = CompareOptions.seed
DEFAULT_DURATION_S = 600.0


@dataclass(frozen=True)
class ComparisonOptions:
    """Checked options. `fleet` is a file name in `data/`, empty for the default."""

    trace: str = DEFAULT_TRACE
    scale: float = 1.0
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

    Missing or empty values take their defaults. Raises `InvalidOptions`
    naming every rejected value.
    """
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name, check in CHECKS.items():
        value = raw.get(name)
        if _is_empty(value):
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


def _is_empty(value: Any) -> bool:
    """Tell whether a value is missing. An empty policy list is a value."""
    if value is None:
        return True
    return isinstance(value, str) and not value.strip()


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
            f"scale {_show(scale)} is out of range: use a factor above 0 and at "
            f"most {_show(limit)}"
        )
    return scale


def check_duration(value: Any) -> float:
    duration = _number("duration", value)
    limit = conf.max_duration_s()
    if not MIN_DURATION_S <= duration <= limit:
        raise ValueError(
            f"duration {_show(duration)} s is out of range: use "
            f"{_show(MIN_DURATION_S)} to {_show(limit)} s"
        )
    return duration


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(f"seed {value!r} is not an integer")
    try:
        seed = int(str(value).strip())
    except ValueError:
        raise ValueError(f"seed {value!r} is not an integer") from None
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
            f"policies {value!r} is not a list: send a list or a comma-separated "
            f"string of {', '.join(POLICIES)}"
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
        raise ValueError(f"{label} {value!r} is not a number")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{label} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{label} {value!r} is not a finite number")
    return number


def _show(number: float) -> str:
    return f"{number:g}"


CHECKS = {
    "trace": check_trace,
    "scale": check_scale,
    "scale_mode": check_scale_mode,
    "fleet": check_fleet,
    "policies": check_policies,
    "seed": check_seed,
    "duration_s": check_duration,
}
