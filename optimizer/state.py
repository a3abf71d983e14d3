"""Parse and check the cluster state read by `python -m optimizer decide`.

Every error is an `InputError` whose text starts with the field path, for
example `variants[1].min_replicas: must not be above max_replicas (3 > 2)`.
Unknown fields are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optimizer.hpa import (
    HpaBehavior,
    HpaInput,
    HpaMetric,
    HpaPod,
    HpaResult,
    MetricType,
    hpa_desired_replicas,
)
from optimizer.power import PowerCurve
from optimizer.saturation import ReplicaSample, SaturationConfig

POLICIES = ("wva", "wva-v1", "hpa")
ROLES = ("prefill", "decode", "both")
LATENCY_FIELDS = ("alpha", "beta", "gamma", "delta")
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
class ServiceClass:
    """An SLO class: `priority` 1 is served first; targets in ms."""

    name: str
    priority: int
    ttft_ms: float
    itl_ms: float


@dataclass(frozen=True)
class Demand:
    """Demand of one model, each value `None` when unknown or not finite.

    `non_finite` names the fields whose value was NaN or infinite.
    `includes_rejected` is true when `arrival_rate` counts the requests
    the gateway rejected too (its request counter was read), so it is not
    only what the replicas served.
    """

    arrival_rate: float | None = None
    avg_input_tokens: float | None = None
    avg_output_tokens: float | None = None
    completion_rate: float | None = None
    non_finite: tuple[str, ...] = ()
    includes_rejected: bool = False


@dataclass(frozen=True)
class Profile:
    """Performance profile of a variant: step times in ms and engine limits.

    `latency` is `(alpha, beta, gamma, delta)` or `None` when not fitted.
    `learned_compute_tokens` is the compute bound k2 learned from the
    replicas (tokens in use when a queue first reached its threshold); it
    wins over the bound derived from the engine limits.
    """

    latency: tuple[float, float, float, float] | None = None
    kv_tokens: float | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    learned_compute_tokens: float | None = None


@dataclass(frozen=True)
class ScaleEvent:
    """A change of replicas already applied to a variant, at `at_s` seconds."""

    at_s: float
    from_replicas: int
    to_replicas: int


@dataclass(frozen=True)
class ScaleDownLimit:
    """At most `replicas` removed per `period_s` seconds."""

    replicas: int
    period_s: float


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
    service_class: str | None = None
    profile: Profile = Profile()
    # NOTE: read and checked, but no policy treats prefill and decode apart yet.
    role: str = "both"
    completion_rate: float | None = None
    scale_down_limit: ScaleDownLimit | None = None
    scale_events: tuple[ScaleEvent, ...] = ()
    # KV pool in tokens per pod, from the pod's num_gpu_blocks * block_size.
    kv_pools: Mapping[str, float] = field(default_factory=dict)
    # Seconds each Pending pod has been pending, when known.
    pending_s: Mapping[str, float] = field(default_factory=dict)
    has_hpa: bool = False

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
class WvaSettings:
    """Settings of the `wva` policy.

    Headrooms are the fractions of capacity that demand may fill before a
    scale-up (`scale_up_headroom`) and below which capacity is spare
    (`scale_down_headroom`). `usd_per_kwh` prices the planned power of a
    replica (at `scale_up_headroom` utilisation) into the allocation.
    """

    scale_up_headroom: float = 0.85
    scale_down_headroom: float = 0.70
    stabilization_s: float = 300.0
    scale_down_step: int = 1
    pending_timeout_s: float = 240.0
    usd_per_kwh: float = 0.0
    change_penalty_usd: float = 0.01
    time_limit_s: float = 1.0
    solver: str = "auto"
    default_max_batch: int = 256


@dataclass(frozen=True)
class ClusterState:
    """The whole input of one decision."""

    policy: str
    now_s: float
    accelerators: Mapping[str, Accelerator]
    variants: tuple[VariantState, ...]
    saturation: Mapping[str, SaturationConfig]
    default_saturation: SaturationConfig
    service_classes: Mapping[str, ServiceClass] = field(default_factory=dict)
    demand: Mapping[str, Demand] = field(default_factory=dict)
    wva: WvaSettings = WvaSettings()

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


def _optional_boolean(obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    """Return true, false or None for a missing or null value."""
    if obj.get(key) is None:
        return None
    return _boolean(obj, key, path, False)


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


def _engine_values(
    obj: Mapping[str, Any], path: str
) -> tuple[float | None, float | None, float | None] | None:
    """Aggregate a data-parallel pod's engines: max KV and waiting, summed running.

    Any engine without a sample, or with a non-finite one, makes the pod's
    value unknown (NaN for non-finite), so that one gap is never hidden.
    """
    if obj.get("engines") is None:
        return None
    engines = [
        _object(item, f"{path}.engines[{i}]")
        for i, item in enumerate(_array(obj["engines"], f"{path}.engines"))
    ]
    if not engines:
        return None
    result: list[float | None] = []
    for key, combine in (
        ("kv_cache_usage", max),
        ("num_requests_waiting", max),
        ("num_requests_running", sum),
    ):
        values = [
            _sample(engine, key, f"{path}.engines[{i}]")
            for i, engine in enumerate(engines)
        ]
        if any(v is None for v in values):
            result.append(None)
        elif not all(math.isfinite(v) for v in values if v is not None):
            result.append(math.nan)
        else:
            result.append(float(combine(v for v in values if v is not None)))
    return result[0], result[1], result[2]


def _replica(obj: Mapping[str, Any], path: str) -> ReplicaSample:
    age = _sample(obj, "age_s", path)
    kv = _sample(obj, "kv_cache_usage", path)
    waiting = _sample(obj, "num_requests_waiting", path)
    running = _sample(obj, "num_requests_running", path)
    engines = _engine_values(obj, path)
    if engines is not None:
        kv, waiting, running = engines
    phase = _string(obj, "phase", path, "Running")
    return ReplicaSample(
        pod=_string(obj, "pod", path),
        kv_cache_usage=kv,
        num_requests_waiting=waiting,
        num_requests_running=running,
        phase=phase,
        ready=_boolean(obj, "ready", path, True),
        terminating=_boolean(obj, "terminating", path, phase == "Terminating"),
        age_s=age if age is None or math.isfinite(age) else math.inf,
        scheduled=_optional_boolean(obj, "scheduled", path),
    )


def _kv_pool(obj: Mapping[str, Any], path: str) -> float | None:
    blocks = _optional_integer(obj, "num_gpu_blocks", path)
    block_size = _optional_integer(obj, "block_size", path)
    if blocks is None or block_size is None or blocks == 0 or block_size == 0:
        return None
    return float(blocks * block_size)


@dataclass(frozen=True)
class _ReplicaList:
    samples: tuple[ReplicaSample, ...]
    kv_pools: dict[str, float]
    pending_s: dict[str, float]


def _replicas(value: Any, path: str) -> _ReplicaList:
    samples: list[ReplicaSample] = []
    pools: dict[str, float] = {}
    pending: dict[str, float] = {}
    seen: set[str] = set()
    for index, item in enumerate(_array(value, path)):
        item_path = f"{path}[{index}]"
        obj = _object(item, item_path)
        sample = _replica(obj, item_path)
        if sample.pod in seen:
            raise InputError(f"{item_path}.pod", f"duplicate pod {sample.pod!r}")
        seen.add(sample.pod)
        samples.append(sample)
        pool = _kv_pool(obj, item_path)
        if pool is not None:
            pools[sample.pod] = pool
        if obj.get("pending_s") is not None:
            pending[sample.pod] = _number(obj, "pending_s", item_path)
    return _ReplicaList(tuple(samples), pools, pending)


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


def _optional_sample(obj: Mapping[str, Any], key: str, path: str) -> float | None:
    """Read a rate that may be unknown: null, NaN and infinity become None."""
    value = _sample(obj, key, path)
    if value is None or not math.isfinite(value):
        return None
    if value < 0:
        raise InputError(_join(path, key), f"must be >= 0, got {value!r}")
    return value


def _profile(value: Any, path: str) -> Profile:
    if value is None:
        return Profile()
    obj = _object(value, path)
    present = [key for key in LATENCY_FIELDS if obj.get(key) is not None]
    latency: tuple[float, float, float, float] | None = None
    if present:
        missing = [key for key in LATENCY_FIELDS if key not in present]
        if missing:
            raise InputError(
                f"{path}.{missing[0]}",
                f"is required when {present[0]} is set (a latency fit needs "
                "alpha, beta, gamma and delta)",
            )
        a, b, c, d = (_non_negative(obj, key, path) for key in LATENCY_FIELDS)
        latency = (a, b, c, d)
    kv_tokens = _optional_sample(obj, "kv_tokens", path)
    learned = _optional_sample(obj, "learned_compute_tokens", path)
    return Profile(
        latency=latency,
        kv_tokens=kv_tokens if kv_tokens else None,
        max_num_seqs=_positive_or_none(obj, "max_num_seqs", path),
        max_num_batched_tokens=_positive_or_none(obj, "max_num_batched_tokens", path),
        learned_compute_tokens=learned if learned else None,
    )


def _positive_or_none(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = _optional_integer(obj, key, path)
    if value == 0:
        raise InputError(_join(path, key), "must be >= 1, or null when unknown")
    return value


def _scale_down_limit(value: Any, path: str) -> ScaleDownLimit | None:
    if value is None:
        return None
    obj = _object(value, path)
    period = _number(obj, "period_s", path)
    if period <= 0:
        raise InputError(f"{path}.period_s", f"must be > 0, got {period!r}")
    return ScaleDownLimit(_integer(obj, "replicas", path), period)


def _scale_events(value: Any, path: str) -> tuple[ScaleEvent, ...]:
    events: list[ScaleEvent] = []
    for index, item in enumerate(_array(value, path)):
        item_path = f"{path}[{index}]"
        obj = _object(item, item_path)
        events.append(
            ScaleEvent(
                _number(obj, "at_s", item_path),
                _integer(obj, "from", item_path),
                _integer(obj, "to", item_path),
            )
        )
    return tuple(sorted(events, key=lambda e: e.at_s))


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

    role = _string(obj, "role", path, "both")
    if role not in ROLES:
        raise InputError(
            f"{path}.role", f"must be one of {', '.join(ROLES)}, got {role!r}"
        )
    replicas = _replicas(obj.get("replicas", []), f"{path}.replicas")
    service_class = obj.get("service_class")
    if service_class is not None:
        service_class = _string(obj, "service_class", path)

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
        replicas=replicas.samples,
        hpa=_hpa(obj.get("hpa"), f"{path}.hpa"),
        service_class=service_class,
        profile=_profile(obj.get("profile"), f"{path}.profile"),
        role=role,
        completion_rate=_optional_sample(obj, "completion_rate", path),
        scale_down_limit=_scale_down_limit(
            obj.get("scale_down_limit"), f"{path}.scale_down_limit"
        ),
        scale_events=_scale_events(obj.get("scale_events", []), f"{path}.scale_events"),
        kv_pools=replicas.kv_pools,
        pending_s=replicas.pending_s,
        has_hpa=obj.get("hpa") is not None,
    )


def _service_classes(value: Any) -> dict[str, ServiceClass]:
    result: dict[str, ServiceClass] = {}
    for index, item in enumerate(_array(value, "service_classes")):
        path = f"service_classes[{index}]"
        obj = _object(item, path)
        name = _string(obj, "name", path)
        if name in result:
            raise InputError(f"{path}.name", f"duplicate service class {name!r}")
        targets = []
        for key in ("ttft_ms", "itl_ms"):
            target = _number(obj, key, path)
            if target <= 0:
                raise InputError(f"{path}.{key}", f"must be > 0, got {target!r}")
            targets.append(target)
        priority = _integer(obj, "priority", path, 1)
        result[name] = ServiceClass(name, priority, targets[0], targets[1])
    return result


def _demand(value: Any) -> dict[str, Demand]:
    result: dict[str, Demand] = {}
    for model, item in _object(value, "demand").items():
        path = f"demand.{model}"
        obj = _object(item, path)
        non_finite = tuple(
            key
            for key in (
                "arrival_rate",
                "avg_input_tokens",
                "avg_output_tokens",
                "completion_rate",
            )
            if isinstance(obj.get(key), float) and not math.isfinite(obj[key])
        )
        result[model] = Demand(
            arrival_rate=_optional_sample(obj, "arrival_rate", path),
            avg_input_tokens=_optional_sample(obj, "avg_input_tokens", path),
            avg_output_tokens=_optional_sample(obj, "avg_output_tokens", path),
            completion_rate=_optional_sample(obj, "completion_rate", path),
            non_finite=non_finite,
            includes_rejected=_boolean(obj, "includes_rejected", path, False),
        )
    return result


def _wva_settings(value: Any) -> WvaSettings:
    if value is None:
        return WvaSettings()
    obj = _object(value, "wva")
    base = WvaSettings()
    values: dict[str, Any] = {}
    for key in (
        "scale_up_headroom",
        "scale_down_headroom",
        "stabilization_s",
        "pending_timeout_s",
        "usd_per_kwh",
        "change_penalty_usd",
        "time_limit_s",
    ):
        values[key] = _number(obj, key, "wva", getattr(base, key))
        if values[key] < 0:
            raise InputError(f"wva.{key}", f"must be >= 0, got {values[key]!r}")
    for key in ("scale_up_headroom", "scale_down_headroom"):
        if not 0 < values[key] <= 1:
            raise InputError(
                f"wva.{key}", f"must be > 0 and at most 1, got {values[key]!r}"
            )
    if values["time_limit_s"] <= 0:
        raise InputError("wva.time_limit_s", "must be > 0")

    values["scale_down_step"] = _integer(obj, "scale_down_step", "wva", 1)
    values["default_max_batch"] = _integer(
        obj, "default_max_batch", "wva", base.default_max_batch
    )
    if values["default_max_batch"] < 1:
        raise InputError("wva.default_max_batch", "must be >= 1")
    solver = _string(obj, "solver", "wva", "auto")
    if solver not in ("auto", "milp", "greedy"):
        raise InputError("wva.solver", f"must be auto, milp or greedy, got {solver!r}")
    values["solver"] = solver
    return WvaSettings(**values)


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
    # The default is the console's default policy.
    policy = policy_override or _string(root, "policy", "", "wva")
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
        service_classes=_service_classes(root.get("service_classes", [])),
        demand=_demand(root.get("demand", {})),
        wva=_wva_settings(root.get("wva")),
    )


def hpa_for_variant(state: ClusterState, variant: VariantState) -> HpaResult:
    """Run the HPA counterfactual of one variant."""
    return hpa_desired_replicas(
        HpaInput(
            current_replicas=variant.current_replicas,
            min_replicas=variant.min_replicas,
            max_replicas=variant.max_replicas,
            pods=variant.hpa_pods(),
            metrics=variant.hpa_metrics(),
            now_s=state.now_s,
            recommendations=variant.hpa.recommendations,
            behavior=variant.hpa.behavior,
        )
    )
