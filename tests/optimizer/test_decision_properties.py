"""Properties of wva-v1 and the HPA over generated states (seeded)."""

from __future__ import annotations

import dataclasses
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.hpa import HpaInput, HpaMetric, HpaPod, hpa_desired_replicas
from optimizer.saturation import (
    ReplicaSample,
    SaturationConfig,
    VariantInput,
    analyse_model,
    is_reporting,
)

PROFILE = settings(derandomize=True, max_examples=300, deadline=None, database=None)
CONFIG = SaturationConfig()

kv_values = st.one_of(
    st.none(),
    st.floats(min_value=0.0, max_value=1.0),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.2, 1.3]),
)
queue_values = st.one_of(
    st.none(),
    st.floats(min_value=0.0, max_value=20.0),
    st.sampled_from([math.nan, math.inf, -1.0]),
)
valid_kv = st.floats(min_value=0.0, max_value=1.0)
valid_queue = st.floats(min_value=0.0, max_value=20.0)


@st.composite
def variants(draw: st.DrawFn, index: int, values_valid: bool) -> VariantInput:
    min_replicas = draw(st.integers(0, 3))
    max_replicas = draw(st.integers(max(1, min_replicas), 10))
    current = draw(st.integers(min_replicas, max_replicas))
    kv = valid_kv if values_valid else kv_values
    queue = valid_queue if values_valid else queue_values
    replicas = [
        ReplicaSample(
            pod=f"v{index}-r{i}",
            kv_cache_usage=draw(kv),
            num_requests_waiting=draw(queue),
            num_requests_running=draw(st.none() | st.floats(0.0, 50.0)),
        )
        for i in range(current)
    ]
    terminating = [
        ReplicaSample(f"v{index}-t{i}", draw(kv), draw(queue), terminating=True)
        for i in range(draw(st.integers(0, 2)))
    ]
    return VariantInput(
        name=f"v{index}",
        usd_per_replica_hour=draw(st.sampled_from([0.80, 1.86, 5.12, 10.60, 12.29])),
        current_replicas=current,
        ready_replicas=current,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        replicas=tuple(replicas + terminating),
    )


@st.composite
def models(draw: st.DrawFn, values_valid: bool = False) -> list[VariantInput]:
    count = draw(st.integers(1, 3))
    return [draw(variants(i, values_valid)) for i in range(count)]


def _live_samples(model: list[VariantInput]) -> list[ReplicaSample]:
    return [s for v in model for s in v.replicas if not s.terminating]


@PROFILE
@given(models())
def test_missing_sample_never_reduces(model: list[VariantInput]) -> None:
    analysis = analyse_model(model, CONFIG)
    if all(is_reporting(s, CONFIG) for s in _live_samples(model)):
        return
    for variant, decision in zip(model, analysis.decisions, strict=True):
        assert decision.target_replicas >= variant.current_replicas
        assert decision.target_replicas == variant.current_replicas


def _floats_in(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for item in value.values() for f in _floats_in(item)]
    if isinstance(value, list | tuple):
        return [f for item in value for f in _floats_in(item)]
    return []


@PROFILE
@given(models())
def test_analysis_has_no_non_finite(model: list[VariantInput]) -> None:
    analysis = dataclasses.asdict(analyse_model(model, CONFIG))
    assert all(math.isfinite(f) for f in _floats_in(analysis))
    json.dumps(analysis, allow_nan=False)


@PROFILE
@given(models())
def test_target_within_bounds(model: list[VariantInput]) -> None:
    analysis = analyse_model(model, CONFIG)
    for variant, decision in zip(model, analysis.decisions, strict=True):
        assert variant.min_replicas <= decision.target_replicas
        assert decision.target_replicas <= variant.max_replicas


@PROFILE
@given(models(values_valid=True))
def test_one_replica_step_per_model(model: list[VariantInput]) -> None:
    analysis = analyse_model(model, CONFIG)
    steps = [
        abs(d.target_replicas - v.current_replicas)
        for v, d in zip(model, analysis.decisions, strict=True)
    ]
    assert sum(steps) <= 1


@PROFILE
@given(models(values_valid=True))
def test_no_reduction_under_scale_up_trigger(model: list[VariantInput]) -> None:
    analysis = analyse_model(model, CONFIG)
    if not any(r.startswith("scale_up:") for r in analysis.reasons):
        return
    for variant, decision in zip(model, analysis.decisions, strict=True):
        assert decision.target_replicas >= variant.current_replicas


@PROFILE
@given(models(values_valid=True))
def test_reduction_names_victim(model: list[VariantInput]) -> None:
    analysis = analyse_model(model, CONFIG)
    for variant, decision in zip(model, analysis.decisions, strict=True):
        if decision.target_replicas < variant.current_replicas:
            pods = {s.pod for s in variant.replicas if not s.terminating}
            assert decision.victim_pod in pods


pod_values = st.one_of(
    st.none(),
    st.floats(min_value=0.0, max_value=50.0),
    st.sampled_from([math.nan, math.inf]),
)


@st.composite
def hpa_inputs(draw: st.DrawFn) -> HpaInput:
    min_replicas = draw(st.integers(1, 3))
    max_replicas = draw(st.integers(min_replicas, 40))
    current = draw(st.integers(min_replicas, max_replicas))
    phases = st.sampled_from(["Running", "Running", "Running", "Pending"])
    pods = tuple(
        HpaPod(f"p{i}", draw(phases), draw(st.booleans())) for i in range(current)
    )
    metrics = tuple(
        HpaMetric(
            f"m{j}",
            "pods",
            draw(st.floats(min_value=0.1, max_value=10.0)),
            pod_values={p.name: draw(pod_values) for p in pods},
            valid=draw(st.booleans()),
        )
        for j in range(draw(st.integers(1, 3)))
    )
    history = tuple(
        (1000.0 - draw(st.floats(0.0, 600.0)), draw(st.integers(0, 40)))
        for _ in range(draw(st.integers(0, 4)))
    )
    return HpaInput(current, min_replicas, max_replicas, pods, metrics, 1000.0, history)


@PROFILE
@given(hpa_inputs())
def test_hpa_target_within_bounds(inp: HpaInput) -> None:
    result = hpa_desired_replicas(inp)
    if result.desired_replicas is None:
        assert all(m.proposal is None for m in result.metrics)
        return
    assert inp.min_replicas <= result.desired_replicas <= inp.max_replicas


@PROFILE
@given(hpa_inputs())
def test_hpa_invalid_metric_never_reduces(inp: HpaInput) -> None:
    result = hpa_desired_replicas(inp)
    if result.desired_replicas is None:
        return
    if any(m.proposal is None for m in result.metrics):
        assert result.desired_replicas >= inp.current_replicas


@PROFILE
@given(hpa_inputs())
def test_hpa_result_has_no_non_finite(inp: HpaInput) -> None:
    result = dataclasses.asdict(hpa_desired_replicas(inp))
    assert all(math.isfinite(f) for f in _floats_in(result))
