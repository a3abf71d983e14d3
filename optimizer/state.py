"""Parse and check the cluster state read by `python -m optimizer decide`.

Every error is an `InputError` whose text starts with the field path, for
example `variants[1].min_replicas: must not be above max_replicas (3 > 2)`.
Unknown fields are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimizer.hpa import HpaBehavior, HpaMetric, HpaPod, MetricType
from optimizer.power import PowerCurve
from optimizer.saturation import ReplicaSample, SaturationConfig

POLICIES = ("wva-v1", "hpa")
REPLICA_METRIC_FIELDS = (
    "kv_cache_usage",
    "num_requests_waiting",
    "num_requests_running",
)
DEFAULT_HPA_METRICS = (("num_requests_waiting", 4.0), ("kv_cache_usage", 0.6))


class InputError(ValueError):
    """An invalid value in the state, with the path of its field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class Accelerator:
    """A GPU type: price per GPU-hour, GPUs available (`None` if unknown), power."""

    name: str
    usd_per_gpu_hour: float
    gpus_available: int | None
    power: PowerCurve | None


@dataclass(frozen=True)
class HpaMetricSpec:
    """One HPA metric: a replica field for `pods`, a value for `external`."""

    name: str
    type: MetricType
    target_average_value: float
    replica_field: str | None
    value: float | None
    valid: bool


@dataclass(frozen=True)
class HpaSpec:
    """HPA counterfactual settings of one variant and the history it kept."""

    metrics: tuple[HpaMetricSpec, ...]
    behavior: HpaBehavior
    recommendations: tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class VariantState:
    """One variant of the state, with its replicas."""

    name: str
    model: str
    accelerator: Accelerator
    gpus_per_replica: int
    min_replicas: int
    max_replicas: int
    current_replicas: int
    ready_replicas: int
    pending_replicas: int
    desired_replicas: int | None
    replicas: tuple[ReplicaSample, ...]
    hpa: HpaSpec

    @property
    def usd_per_replica_hour(self) -> float:
        return self.accelerator.usd_per_gpu_hour * self.gpus_per_replica

    def hpa_pods(self) -> tuple[HpaPod, ...]:
        return tuple(
            HpaPod(r.pod, r.phase, r.ready, r.terminating) for r in self.replicas
        )

    def hpa_metrics(self) -> tuple[HpaMetric, ...]:
        metrics: list[HpaMetric] = []
        for spec in self.hpa.metrics:
            pod_values: dict[str, float | None] | None = None
            if spec.replica_field is not None:
                pod_values = {
                    r.pod: getattr(r, spec.replica_field) for r in self.replicas
                }
            metrics.append(
                HpaMetric(
                    name=spec.name,
                    type=spec.type,
                    target_average_value=spec.target_average_value,
                    pod_values=pod_values,
                    value=spec.value,
                    valid=spec.valid,
                )
            )
        return tuple(metrics)


@dataclass(frozen=True)
class ClusterState:
    """The whole input of one decision."""

    policy: str
    now_s: float
    accelerators: Mapping[str, Accelerator]
    variants: tuple[VariantState, ...]
    saturation: Mapping[str, SaturationConfig]
    default_saturation: SaturationConfig

    def saturation_for(self, model: str) -> SaturationConfig:
        return self.saturation.get(model, self.default_saturation)


_MISSING = object()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(path, f"must be an object, got {type(value).__name__}")
    return value


def _array(value: Any, path: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise InputError(path, f"must be an array, got {type(value).__name__}")
    return value


def _string(
    obj: Mapping[str, Any], key: str, path: str, default: Any = _MISSING
) -> str:
    value = obj.get(key, default)
    if value is _MISSING:
        raise InputError(_join(path, key), "is required")
    if not isinstance(value, str) or not value:
        raise InputError(_join(path, key), f"must be a non-empty string, got {value!r}")
    return value


def _integer(
    obj: Mapping[str, Any], key: str, path: str, default: Any = _MISSING
) -> int:
    value = obj.get(key, default)
    if value is _MISSING:
        raise InputError(_join(path, key), "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(_join(path, key), f"must be an integer, got {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise InputError(_join(path, key), f"must be an integer, got {value!r}")
    if value < 0:
        raise InputError(_join(path, key), f"must be >= 0, got {value!r}")
    return int(value)


def _optional_integer(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    if obj.get(key) is None:
        return None
    return _integer(obj, key, path)


def _number(
    obj: Mapping[str, Any], key: str, path: str, default: Any = _MISSING
) -> float:
    """Read a finite number, for configuration where NaN is always an error."""
    value = obj.get(key, default)
    if value is _MISSING:
        raise InputError(_join(path, key), "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(_join(path, key), f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(_join(path, key), f"must be finite, got {value!r}")
    return float(value)


def _sample(obj: Mapping[str, Any], key: str, path: str) -> float | None:
    """Read a metric value: `null` or absent is no sample, NaN passes as data."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(_join(path, key), f"must be a number or null, got {value!r}")
    return float(value)


def _boolean(obj: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise InputError(_join(path, key), f"must be true or false, got {value!r}")
    return value


def _saturation_config(
    obj: Mapping[str, Any], path: str, base: SaturationConfig
) -> SaturationConfig:
    values: dict[str, float] = {}
    for key in (
        "kv_cache_threshold",
        "queue_length_threshold",
        "kv_spare_trigger",
        "queue_spare_trigger",
        "max_sample_age_s",
    ):
        values[key] = _number(obj, key, path, getattr(base, key))
    try:
        return SaturationConfig(**values)
    except ValueError as err:
        raise InputError(path, str(err)) from None


def _accelerator(obj: Mapping[str, Any], path: str) -> Accelerator:
    power: PowerCurve | None = None
    if obj.get("power_w") is not None:
        power_obj = _object(obj["power_w"], f"{path}.power_w")
        power_path = f"{path}.power_w"
        try:
            power = PowerCurve(
                _number(power_obj, "idle", power_path),
                _number(power_obj, "mid", power_path),
                _number(power_obj, "full", power_path),
            )
        except ValueError as err:
            if isinstance(err, InputError):
                raise
            raise InputError(power_path, str(err)) from None
    return Accelerator(
        name=_string(obj, "name", path),
        usd_per_gpu_hour=_non_negative(obj, "usd_per_gpu_hour", path),
        gpus_available=_optional_integer(obj, "gpus_available", path),
        power=power,
    )


def _non_negative(obj: Mapping[str, Any], key: str, path: str) -> float:
    value = _number(obj, key, path)
    if value < 0:
        raise InputError(_join(path, key), f"must be >= 0, got {value!r}")
    return value


def _replica(obj: Mapping[str, Any], path: str) -> ReplicaSample:
    age = _sample(obj, "age_s", path)
    return ReplicaSample(
        pod=_string(obj, "pod", path),
        kv_cache_usage=_sample(obj, "kv_cache_usage", path),
        num_requests_waiting=_sample(obj, "num_requests_waiting", path),
        num_requests_running=_sample(obj, "num_requests_running", path),
        phase=_string(obj, "phase", path, "Running"),
        ready=_boolean(obj, "ready", path, True),
        terminating=_boolean(obj, "terminating", path, False),
        age_s=age if age is None or math.isfinite(age) else math.inf,
    )


def _replicas(value: Any, path: str) -> tuple[ReplicaSample, ...]:
    samples: list[ReplicaSample] = []
    seen: set[str] = set()
    for index, item in enumerate(_array(value, path)):
        item_path = f"{path}[{index}]"
        sample = _replica(_object(item, item_path), item_path)
        if sample.pod in seen:
            raise InputError(f"{item_path}.pod", f"duplicate pod {sample.pod!r}")
        seen.add(sample.pod)
        samples.append(sample)
    return tuple(samples)


def _hpa_metric(obj: Mapping[str, Any], path: str) -> HpaMetricSpec:
    kind = _string(obj, "type", path, "pods")
    target = _number(obj, "target_average_value", path)
    if target <= 0:
        raise InputError(f"{path}.target_average_value", f"must be > 0, got {target!r}")
    valid = _boolean(obj, "valid", path, True)
    if kind == "pods":
        field_name = _string(obj, "metric", path)
        if field_name not in REPLICA_METRIC_FIELDS:
            allowed = ", ".join(REPLICA_METRIC_FIELDS)
            raise InputError(
                f"{path}.metric",
                f"unknown replica field {field_name!r}; use one of {allowed}",
            )
        name = _string(obj, "name", path, field_name)
        return HpaMetricSpec(name, "pods", target, field_name, None, valid)
    if kind == "external":
        name = _string(obj, "name", path)
        value = _sample(obj, "value", path)
        return HpaMetricSpec(name, "external", target, None, value, valid)
    raise InputError(f"{path}.type", f"must be 'pods' or 'external', got {kind!r}")


def _hpa(value: Any, path: str) -> HpaSpec:
    if value is None:
        metrics = tuple(
            HpaMetricSpec(name, "pods", target, name, None, True)
            for name, target in DEFAULT_HPA_METRICS
        )
        return HpaSpec(metrics, HpaBehavior(), ())
    obj = _object(value, path)
    specs: tuple[HpaMetricSpec, ...]
    if obj.get("metrics") is None:
        specs = _hpa(None, path).metrics
    else:
        items = _array(obj["metrics"], f"{path}.metrics")
        specs = tuple(
            _hpa_metric(_object(item, f"{path}.metrics[{i}]"), f"{path}.metrics[{i}]")
            for i, item in enumerate(items)
        )
    defaults = HpaBehavior()
    try:
        behavior = HpaBehavior(
            tolerance=_number(obj, "tolerance", path, defaults.tolerance),
            scale_down_stabilization_s=_number(
                obj,
                "scale_down_stabilization_s",
                path,
                defaults.scale_down_stabilization_s,
            ),
        )
    except ValueError as err:
        if isinstance(err, InputError):
            raise
        raise InputError(path, str(err)) from None
    history: list[tuple[float, int]] = []
    for i, item in enumerate(
        _array(obj.get("recommendations", []), f"{path}.recommendations")
    ):
        item_path = f"{path}.recommendations[{i}]"
        rec = _object(item, item_path)
        history.append(
            (_number(rec, "at_s", item_path), _integer(rec, "replicas", item_path))
        )
    return HpaSpec(specs, behavior, tuple(history))


def _variant(
    obj: Mapping[str, Any], path: str, accelerators: Mapping[str, Accelerator]
) -> VariantState:
    accelerator_name = _string(obj, "accelerator", path)
    if accelerator_name not in accelerators:
        raise InputError(
            f"{path}.accelerator", f"unknown accelerator {accelerator_name!r}"
        )
    min_replicas = _integer(obj, "min_replicas", path)
    max_replicas = _integer(obj, "max_replicas", path)
    if min_replicas > max_replicas:
        raise InputError(
            f"{path}.min_replicas",
            f"must not be above max_replicas ({min_replicas} > {max_replicas})",
        )
    current = _integer(obj, "current_replicas", path)
    gpus = _integer(obj, "gpus_per_replica", path, 1)
    if gpus < 1:
        raise InputError(f"{path}.gpus_per_replica", f"must be >= 1, got {gpus}")
    return VariantState(
        name=_string(obj, "name", path),
        model=_string(obj, "model", path),
        accelerator=accelerators[accelerator_name],
        gpus_per_replica=gpus,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        current_replicas=current,
        ready_replicas=_integer(obj, "ready_replicas", path, current),
        pending_replicas=_integer(obj, "pending_replicas", path, 0),
        desired_replicas=_optional_integer(obj, "desired_replicas", path),
        replicas=_replicas(obj.get("replicas", []), f"{path}.replicas"),
        hpa=_hpa(obj.get("hpa"), f"{path}.hpa"),
    )


def _accelerators(value: Any) -> dict[str, Accelerator]:
    result: dict[str, Accelerator] = {}
    for index, item in enumerate(_array(value, "accelerators")):
        path = f"accelerators[{index}]"
        accelerator = _accelerator(_object(item, path), path)
        if accelerator.name in result:
            raise InputError(
                f"{path}.name", f"duplicate accelerator {accelerator.name!r}"
            )
        result[accelerator.name] = accelerator
    return result


def _variants(
    value: Any, accelerators: Mapping[str, Accelerator]
) -> tuple[VariantState, ...]:
    variants: list[VariantState] = []
    seen: set[str] = set()
    for index, item in enumerate(_array(value, "variants")):
        path = f"variants[{index}]"
        variant = _variant(_object(item, path), path, accelerators)
        if variant.name in seen:
            raise InputError(f"{path}.name", f"duplicate variant {variant.name!r}")
        seen.add(variant.name)
        variants.append(variant)
    return tuple(variants)


def parse_state(document: Any, policy_override: str | None = None) -> ClusterState:
    """Check a decoded JSON document and build the state, or raise InputError."""
    if not isinstance(document, Mapping):
        raise InputError(
            "(state)", f"must be a JSON object, got {type(document).__name__}"
        )
    root: Mapping[str, Any] = document
    policy = policy_override or _string(root, "policy", "", "wva-v1")
    if policy not in POLICIES:
        raise InputError(
            "policy", f"unsupported policy {policy!r}, use one of {', '.join(POLICIES)}"
        )
    default_saturation = SaturationConfig()
    if root.get("saturation") is not None:
        default_saturation = _saturation_config(
            _object(root["saturation"], "saturation"), "saturation", default_saturation
        )
    per_model: dict[str, SaturationConfig] = {}
    for index, item in enumerate(_array(root.get("models", []), "models")):
        path = f"models[{index}]"
        obj = _object(item, path)
        per_model[_string(obj, "name", path)] = _saturation_config(
            obj, path, default_saturation
        )
    accelerators = _accelerators(root.get("accelerators", []))
    return ClusterState(
        policy=policy,
        now_s=_number(root, "now_s", "", 0.0),
        accelerators=accelerators,
        variants=_variants(root.get("variants", []), accelerators),
        saturation=per_model,
        default_saturation=default_saturation,
    )
