"""Control cycle on missing, failed, renamed and non-finite metrics."""

from __future__ import annotations

import json

import pytest

from tests.control.fakes import FakeMetrics, FakePod, exposition
from wva_web.control.models import (
    ControlCycle,
    CycleStatus,
    Decision,
    MetricSample,
    ScaleAction,
    VariantState,
)


def pods(prefix: str, count: int) -> list[FakePod]:
    return [FakePod(f"{prefix}{i}") for i in range(1, count + 1)]


def decision(cycle: ControlCycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


@pytest.fixture
def two_variants(make_model, make_variant, kube):
    model = make_model()
    make_variant(model, "a", "H100-80GB", max_replicas=8)
    make_variant(model, "b", "A100-80GB", max_replicas=8)
    kube.add("a", 4, pods("a", 4))
    kube.add("b", 3, pods("b", 3))
    return model


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        ("", "empty_response"),
        ("http_503", "http_503"),
        ("connection_refused", "connection_refused"),
    ],
)
def test_outage_is_not_zero_load(two_variants, run_cycle, failure, kind):
    # Given every scrape fails the same way for five cycles in a row.
    names = [f"a{i}" for i in range(1, 5)] + [f"b{i}" for i in range(1, 4)]
    source = FakeMetrics(dict.fromkeys(names, failure))
    # When five cycles run.
    cycles = [run_cycle(source) for _ in range(5)]
    # Then every cycle is metrics_unavailable and names the error kind.
    for cycle in cycles:
        assert cycle.status == CycleStatus.METRICS_UNAVAILABLE
        assert {error["kind"] for error in cycle.errors} == {kind}
    # And no variant is lowered, and no action exists at all.
    assert ScaleAction.objects.count() == 0
    assert decision(cycles[-1], "a").target_replicas == 4
    assert decision(cycles[-1], "b").target_replicas == 3
    # And the HPA counterfactual is unknown, not 0.
    assert decision(cycles[-1], "a").hpa_target_replicas is None
    assert decision(cycles[-1], "b").hpa_target_replicas is None
    # And both variants show as degraded.
    assert VariantState.objects.get(variant__name="a").degraded is True
    assert VariantState.objects.get(variant__name="b").degraded is True
    assert VariantState.objects.get(variant__name="a").missing_kv_cycles == 5


def test_failing_pod_does_not_stop_other_model(
    make_model, make_variant, kube, run_cycle
):
    # Given M1 with a8 timing out and M2 whose replicas run out of KV cache.
    m1 = make_model("M1")
    m2 = make_model("M2")
    make_variant(m1, "a", "H100-80GB", max_replicas=12)
    make_variant(m2, "c", "L40S", max_replicas=8)
    kube.add("a", 8, pods("a", 8))
    kube.add("c", 2, pods("c", 2))
    bodies = {f"a{i}": exposition(kv=0.10, waiting=0) for i in range(1, 8)}
    bodies["a8"] = "timeout"
    bodies["c1"] = exposition(kv=0.78, waiting=1)
    bodies["c2"] = exposition(kv=0.76, waiting=1)
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then it is partial, M2 scales up and M1 holds at 8.
    assert cycle.status == CycleStatus.PARTIAL
    assert decision(cycle, "c").target_replicas == 3
    assert "scale_up:spare_kv" in decision(cycle, "c").reasons
    assert decision(cycle, "a").target_replicas == 8
    assert "missing_metrics:a8" in decision(cycle, "a").reasons
    action = ScaleAction.objects.get()
    assert (action.variant.name, action.from_replicas, action.to_replicas) == (
        "c",
        2,
        3,
    )
    assert action.state == "pending"


def test_kv_read_under_both_names(make_model, make_variant, kube, run_cycle):
    # Given A exporting the new KV name, B the old one, and b3 both.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    make_variant(model, "b", "A100-80GB")
    kube.add("a", 2, pods("a", 2))
    kube.add("b", 3, pods("b", 3))
    old = "vllm:gpu_cache_usage_perc"
    bodies = {
        "a1": exposition(kv=0.42),
        "a2": exposition(kv=0.47),
        "b1": exposition(kv=0.81, kv_name=old),
        "b2": exposition(kv=0.30, kv_name=old),
        "b3": exposition(kv=0.55, old_kv=0.55),
    }
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then five replicas are counted, b3 once, all valid.
    samples = MetricSample.objects.filter(cycle=cycle)
    assert samples.count() == 5
    assert samples.get(pod="b3").kv_cache_usage == 0.55
    assert samples.get(pod="b1").kv_cache_usage == 0.81
    assert set(samples.values_list("status", flat=True)) == {"ok"}
    # And the reduction check passes, so the dearer variant A loses one.
    assert decision(cycle, "a").target_replicas == 1
    assert decision(cycle, "a").victim_pod == "a1"
    assert decision(cycle, "b").target_replicas == 3
    assert cycle.status == CycleStatus.OK


def test_kv_metric_not_found_blocks_reduction(
    make_model, make_variant, kube, run_cycle, settings
):
    # Given the same fleet under `wva-v1`, but b3 exports vLLM series without
    # any KV name.
    settings.WVA_POLICY = "wva-v1"
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    make_variant(model, "b", "A100-80GB")
    kube.add("a", 2, pods("a", 2))
    kube.add("b", 3, pods("b", 3))
    bodies = {
        "a1": exposition(kv=0.42),
        "a2": exposition(kv=0.47),
        "b1": exposition(kv=0.81),
        "b2": exposition(kv=0.30),
        "b3": exposition(kv=None),
    }
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then b3 is marked, not read as idle, and nothing is reduced.
    sample = MetricSample.objects.get(cycle=cycle, pod="b3")
    assert sample.status == "kv_metric_not_found"
    assert sample.kv_cache_usage is None
    assert decision(cycle, "a").target_replicas == 2
    assert ScaleAction.objects.count() == 0
    state = VariantState.objects.get(variant__name="b")
    metrics_condition = state.conditions[0]
    assert metrics_condition["reason"] == "kv_metric_not_found"
    assert state.degraded is True


@pytest.mark.parametrize(
    ("a1_kv", "a3_kv", "flags"),
    [
        ("NaN", "0.60", {"a1": "non_finite"}),
        ("NaN", "-Inf", {"a1": "non_finite", "a3": "non_finite"}),
        ("NaN", "1.3", {"a1": "non_finite", "a3": "out_of_range"}),
    ],
)
def test_non_finite_kv_is_null_with_flag(
    make_model, make_variant, kube, run_cycle, a1_kv, a3_kv, flags
):
    # Given a1 exporting NaN and, in later runs, a3 exporting -Inf or 1.3.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 3, pods("a", 3))
    bodies = {
        "a1": exposition(kv=a1_kv, waiting=2),
        "a2": exposition(kv=0.50, waiting=2),
        "a3": exposition(kv=a3_kv, waiting=2),
    }
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then the flagged values are stored as null with their status.
    for pod, status in flags.items():
        sample = MetricSample.objects.get(cycle=cycle, pod=pod)
        assert sample.kv_cache_usage is None
        assert sample.status == status
    # And the variant holds at 3 with the gate reason.
    assert decision(cycle, "a").target_replicas == 3
    assert "missing_metrics:" + ",".join(sorted(flags)) in decision(cycle, "a").reasons
    # And every stored JSON field is strict JSON.
    cycle.refresh_from_db()
    for value in (cycle.inputs, cycle.outputs, cycle.errors, cycle.timings_ms):
        json.dumps(value, allow_nan=False)
    assert VariantState.objects.get(variant__name="a").degraded is True


def test_kv_of_one_is_valid_and_saturated(make_model, make_variant, kube, run_cycle):
    # Given a replica at exactly 1.0 KV usage next to one at 0.5.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 2, pods("a", 2))
    bodies = {"a1": exposition(kv=1.0), "a2": exposition(kv=0.5)}
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then 1.0 is stored as a valid value and counts as saturated.
    assert MetricSample.objects.get(cycle=cycle, pod="a1").status == "ok"
    assert "saturated:a1" in decision(cycle, "a").reasons
    assert cycle.status == CycleStatus.OK


def test_hpa_counterfactual_with_kv_missing(
    make_model, make_variant, kube, run_cycle, settings
):
    # Given six replicas under `wva-v1` exporting waiting requests but no KV metric.
    settings.WVA_POLICY = "wva-v1"
    model = make_model()
    make_variant(model, "a", "H100-80GB", max_replicas=12, mode="auto")
    kube.add("a", 6, pods("a", 6))
    names = [f"a{i}" for i in range(1, 7)]
    # When one cycle reads 1 waiting per replica, and the next 5.
    first = run_cycle(FakeMetrics(dict.fromkeys(names, exposition(kv=None, waiting=1))))
    second = run_cycle(
        FakeMetrics(dict.fromkeys(names, exposition(kv=None, waiting=5)))
    )
    # Then the HPA holds at 6 on the first, since the valid metric points down.
    assert decision(first, "a").hpa_target_replicas == 6
    assert "invalid_metric:kv_cache_usage" in decision(first, "a").hpa_reasons
    # And goes to 8 on the second, a scale-up with an invalid metric.
    assert decision(second, "a").hpa_target_replicas == 8
    # And wva-v1 holds both times, counting the cycles without KV.
    assert decision(first, "a").target_replicas == 6
    assert decision(second, "a").target_replicas == 6
    assert ScaleAction.objects.count() == 0
    assert VariantState.objects.get(variant__name="a").missing_kv_cycles == 2
