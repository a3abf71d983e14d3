"""Control cycle under the `hpa` policy: HPA targets inside the safety rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.control.fakes import NOW, FakeKube, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import InferenceModel, Policy, Variant
from wva_web.control.models import ControlCycle, Decision, ScaleAction

WAITING_TARGET_4 = [{"metric": "num_requests_waiting", "target_average_value": 4}]
# Cycles far enough apart that the scale-down stabilisation window (300 s)
# has dropped the first cycle's recommendations by the last one.
STABILISED = (NOW, NOW + dt.timedelta(seconds=150), NOW + dt.timedelta(seconds=301))


def decision(cycle: ControlCycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


@pytest.fixture
def hpa_model(make_model: Any, make_variant: Any, kube: FakeKube) -> InferenceModel:
    """Model M under `hpa`: a on L40S at 3 replicas, HPA target 4 waiting per pod."""
    model = make_model()
    InferenceModel.objects.filter(pk=model.pk).update(policy=Policy.HPA)
    make_variant(model, "a", "L40S", max_replicas=8, hpa_metrics=WAITING_TARGET_4)
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    return model


def waiting(
    *values: float | str, kv: tuple[float, ...] = (0.3, 0.3, 0.3)
) -> FakeMetrics:
    """Pods a1, a2, a3 with these waiting counts; a str is a scrape error."""
    pods = {}
    for index, value in enumerate(values):
        name = f"a{index + 1}"
        if isinstance(value, str):
            pods[name] = value
        else:
            pods[name] = exposition(kv=kv[index], waiting=value, running=2)
    return FakeMetrics(pods)


def test_hpa_policy_scales_up_by_ratio(
    hpa_model: InferenceModel, run_cycle: Any
) -> None:
    # Given 8 waiting requests on each of 3 replicas against a target of 4.
    # When the cycle runs.
    cycle = run_cycle(waiting(8, 8, 8), NOW)
    # Then the target is ceil(3 * 8 / 4) = 6, proposed as a pending action.
    row = decision(cycle, "a")
    assert row.target_replicas == 6
    assert row.analysis["policy"] == "hpa"
    assert "proposal:num_requests_waiting=6" in row.reasons
    assert "scale_up:hpa" in row.reasons
    action = ScaleAction.objects.get(variant__name="a")
    assert (action.from_replicas, action.to_replicas) == (3, 6)
    # And the policy's target is the HPA counterfactual's.
    assert row.hpa_target_replicas == 6


def test_hpa_policy_records_metric_inputs(
    hpa_model: InferenceModel, run_cycle: Any
) -> None:
    # Given the same load.
    # When the cycle runs.
    cycle = run_cycle(waiting(8, 8, 8), NOW)
    # Then the analysis records the metric's average, target, ratio and proposal.
    (metric,) = decision(cycle, "a").analysis["inputs"]["hpa_metrics"]
    assert metric["metric"] == "num_requests_waiting"
    assert metric["average"] == 8.0
    assert metric["target"] == 4
    assert metric["ratio"] == 2.0
    assert metric["proposal"] == 6
    assert "num_requests_waiting 8 per pod, target 4" in decision(cycle, "a").message


def test_hpa_policy_within_tolerance_holds(
    hpa_model: InferenceModel, run_cycle: Any
) -> None:
    # Given a mean of 4.3 waiting requests: ratio 1.075, inside the 10% tolerance.
    # When the cycle runs.
    cycle = run_cycle(waiting(4.3, 4.3, 4.3), NOW)
    # Then the variant keeps 3 replicas, with the tolerance as its reason.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert "within_tolerance:num_requests_waiting" in row.reasons
    assert not ScaleAction.objects.exists()


def test_hpa_policy_above_tolerance_scales(
    hpa_model: InferenceModel, run_cycle: Any
) -> None:
    # Given a mean of 4.5 waiting requests: ratio 1.125, outside the tolerance.
    # When the cycle runs.
    cycle = run_cycle(waiting(4.5, 4.5, 4.5), NOW)
    # Then the target is ceil(3 * 1.125) = 4.
    assert decision(cycle, "a").target_replicas == 4


def test_missing_metric_flips_scale_up(
    hpa_model: InferenceModel, run_cycle: Any
) -> None:
    # Given a1 at 8 waiting and a2, a3 without a sample: the ready ones point up.
    # When the cycle runs.
    cycle = run_cycle(waiting(8, "timeout", "timeout"), NOW)
    # Then the pods without a sample count as 0, the ratio (8/3)/4 points
    # down, and the HPA keeps 3 replicas.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert "direction_flipped:num_requests_waiting" in row.reasons
    assert not ScaleAction.objects.exists()


def test_missing_metric_counts_as_target_down(
    hpa_model: InferenceModel, run_cycle: Any
) -> None:
    # Given a1, a2 at 2 waiting and a3 without a sample, for over 300 s.
    cycles = [run_cycle(waiting(2, 2, "timeout"), at) for at in STABILISED]
    # Then a3 counts as the target (4): ratio (2+2+4)/3/4 = 0.67 and the HPA
    # proposes ceil(3 * 0.67) = 2.
    last = decision(cycles[-1], "a")
    assert "proposal:num_requests_waiting=2" in last.reasons
    assert last.hpa_target_replicas == 2
    # And the console keeps 3 replicas, since a3 has no valid sample.
    assert last.target_replicas == 3
    assert last.bound_by == "missing_data"
    assert "missing_metrics:a3" in last.reasons
    assert not ScaleAction.objects.exists()


def test_scale_down_waits_for_window(hpa_model: InferenceModel, run_cycle: Any) -> None:
    # Given 2 waiting requests on each replica, ratio 0.5.
    # When the first cycle runs.
    cycle = run_cycle(waiting(2, 2, 2), NOW)
    # Then the stabilisation window keeps 3 replicas.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert "stabilized" in row.reasons
    assert row.bound_by == "stabilization"


def test_scale_down_after_window_names_victim(
    hpa_model: InferenceModel, run_cycle: Any
) -> None:
    # Given ratio 0.5 for over 300 s, a2 with the least KV-cache in use.
    load = {"kv": (0.3, 0.1, 0.2)}
    cycles = [run_cycle(waiting(2, 2, 2, **load), at) for at in STABILISED]
    # Then the last cycle proposes ceil(3 * 0.5) = 2 and removes a2.
    last = decision(cycles[-1], "a")
    assert last.target_replicas == 2
    assert "scale_down:hpa" in last.reasons
    assert last.victim_pod == "a2"
    action = ScaleAction.objects.get(variant__name="a")
    assert (action.from_replicas, action.to_replicas) == (3, 2)
    # And the earlier cycles kept 3.
    assert decision(cycles[0], "a").target_replicas == 3
    assert decision(cycles[1], "a").target_replicas == 3


def test_scale_up_rate_limited(
    make_model: Any, make_variant: Any, kube: FakeKube, run_cycle: Any
) -> None:
    # Given one replica with 40 waiting requests against a target of 4.
    model = make_model()
    InferenceModel.objects.filter(pk=model.pk).update(policy=Policy.HPA)
    make_variant(model, "a", "L40S", max_replicas=20, hpa_metrics=WAITING_TARGET_4)
    kube.add("a", 1, [FakePod("a1")])
    # When the cycle runs.
    cycle = run_cycle(waiting(40), NOW)
    # Then the HPA wants 10 but grows by at most max(100%, 4 pods) to 5.
    row = decision(cycle, "a")
    assert row.target_replicas == 5
    assert "scale_up_limit" in row.reasons
    assert row.bound_by == "scale_up_limit"


def test_hpa_policy_capped_by_max(
    make_model: Any, make_variant: Any, kube: FakeKube, run_cycle: Any
) -> None:
    # Given max 4 replicas and a load that needs 6.
    model = make_model()
    InferenceModel.objects.filter(pk=model.pk).update(policy=Policy.HPA)
    make_variant(model, "a", "L40S", max_replicas=4, hpa_metrics=WAITING_TARGET_4)
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    # When the cycle runs.
    cycle = run_cycle(waiting(8, 8, 8), NOW)
    # Then the target stops at the max.
    row = decision(cycle, "a")
    assert row.target_replicas == 4
    assert "capped_by_max" in row.reasons
    assert row.bound_by == "max_replicas"


def test_no_hpa_metrics_holds(
    make_model: Any, make_variant: Any, kube: FakeKube, run_cycle: Any
) -> None:
    # Given a variant under `hpa` with no hpa_metrics, under heavy load.
    model = make_model()
    InferenceModel.objects.filter(pk=model.pk).update(policy=Policy.HPA)
    make_variant(model, "a", "L40S", max_replicas=8, hpa_metrics=[])
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    # When the cycle runs.
    cycle = run_cycle(waiting(20, 20, 20), NOW)
    # Then it keeps 3 replicas with a reason and a message naming the gap.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert row.reasons == ["no_hpa_metrics"]
    assert row.bound_by == "missing_data"
    assert "has no hpa_metrics" in row.message
    assert not ScaleAction.objects.exists()


def test_no_valid_metric_holds(hpa_model: InferenceModel, run_cycle: Any) -> None:
    # Given no replica with a sample.
    # When the cycle runs.
    cycle = run_cycle(waiting("timeout", "timeout", "timeout"), NOW)
    # Then the variant keeps 3 replicas: the HPA's count is unknown.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert "no_valid_metric" in row.reasons
    assert row.bound_by == "missing_data"


def test_pinned_variant_holds(hpa_model: InferenceModel, run_cycle: Any) -> None:
    # Given variant a pinned by an override for another 10 minutes.
    Variant.objects.filter(name="a").update(
        pinned_replicas=3, pinned_until=NOW + dt.timedelta(minutes=10)
    )
    # When the cycle runs under a load that needs 6.
    cycle = run_cycle(waiting(8, 8, 8), NOW)
    # Then the pin wins over the HPA.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert row.bound_by == "pinned"
    assert "pinned" in row.reasons
    assert not ScaleAction.objects.exists()


def test_hpa_counterfactual_reads_catalogue_bounds(
    make_model: Any, make_variant: Any, kube: FakeKube, run_cycle: Any
) -> None:
    # Given a pinned variant whose HPA would grow it.
    model = make_model()
    InferenceModel.objects.filter(pk=model.pk).update(policy=Policy.HPA)
    make_variant(
        model,
        "a",
        "L40S",
        max_replicas=8,
        hpa_metrics=WAITING_TARGET_4,
        pinned_until=NOW + dt.timedelta(minutes=10),
    )
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    # When the cycle runs.
    cycle = run_cycle(waiting(8, 8, 8), NOW)
    # Then the counterfactual still shows what a stock HPA would set.
    assert decision(cycle, "a").hpa_target_replicas == 6


def test_other_variant_unreadable_keeps_own(
    hpa_model: InferenceModel, make_variant: Any, kube: FakeKube, run_cycle: Any
) -> None:
    # Given a second variant b whose workload does not exist in the cluster.
    make_variant(hpa_model, "b", "H100-80GB", hpa_metrics=WAITING_TARGET_4)
    # When the cycle runs under a load that needs 6.
    cycle = run_cycle(waiting(8, 8, 8), NOW)
    # Then a still scales, because each HPA scales its own workload.
    assert decision(cycle, "a").target_replicas == 6
    assert not Decision.objects.filter(cycle=cycle, variant__name="b").exists()
    assert cycle.outputs["variants"]["b"]["target_replicas"] is None


def test_policy_hpa_in_cycle_outputs(hpa_model: InferenceModel, run_cycle: Any) -> None:
    # Given the model under `hpa`.
    # When the cycle runs.
    cycle = run_cycle(waiting(8, 8, 8), NOW)
    # Then the cycle's model summary names the policy.
    assert cycle.outputs["models"]["M"]["policy"] == "hpa"


def test_stuck_queue_blocks_scale_up(hpa_model: InferenceModel, run_cycle: Any) -> None:
    # Given a1 with 20 waiting requests, none running and no new tokens for
    # over 5 minutes, while a2 and a3 are idle.
    bodies = {
        "a1": exposition(kv=0.0, waiting=20, running=0),
        "a2": exposition(kv=0.2, waiting=0, running=2),
        "a3": exposition(kv=0.2, waiting=0, running=2),
    }
    times = (NOW, NOW + dt.timedelta(seconds=150), NOW + dt.timedelta(seconds=310))
    cycles = [run_cycle(FakeMetrics(bodies), at) for at in times]
    # Then the first cycle, before the queue counts as stuck, proposes 5.
    assert decision(cycles[0], "a").target_replicas == 5
    # And once it counts as stuck, the HPA alone would still grow (mean 6.7
    # waiting against 4), but the trigger comes only from the stuck queue.
    last = decision(cycles[-1], "a")
    assert last.hpa_target_replicas == 5
    assert last.target_replicas == 3
    assert "queue_without_progress" in last.reasons
    # And the earlier proposal is superseded.
    states = list(ScaleAction.objects.values_list("state", flat=True))
    assert states == ["superseded"]
