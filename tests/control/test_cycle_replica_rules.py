"""Control cycle: one-minute peaks, grace period, silent and stuck replicas."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.control.fakes import NOW, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import Variant
from wva_web.control.models import (
    ControlCycle,
    Decision,
    MetricSample,
    ScaleAction,
    VariantState,
)


def decision(cycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


def conditions(variant: str) -> dict[str, dict]:
    items = VariantState.objects.get(variant__name=variant).conditions
    return {item["type"]: item for item in items}


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def pod_input(cycle, variant: str, pod: str) -> dict:
    pods = cycle.inputs["variants"][variant]["pods"]
    return next(item for item in pods if item["name"] == pod)


@pytest.fixture
def two_replicas(make_model, make_variant, kube):
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])


def test_peak_of_last_minute_drives_scale_up(two_replicas, run_cycle):
    # Given a1 at KV 0.76 thirty seconds ago and 0.65 now; a2 at 0.60, then 0.72.
    run_cycle(FakeMetrics({"a1": exposition(kv=0.76), "a2": exposition(kv=0.60)}), NOW)
    source = FakeMetrics({"a1": exposition(kv=0.65), "a2": exposition(kv=0.72)})
    # When the cycle runs at t = 30.
    cycle = run_cycle(source, at(30))
    # Then the peaks 0.76 and 0.72 give spare KV 0.06 < 0.10: A 2 to 3.
    # (Current values alone give spare 0.115 and no change.)
    assert decision(cycle, "a").target_replicas == 3
    assert pod_input(cycle, "a", "a1")["sample"]["kv_cache_usage"] == 0.65
    assert pod_input(cycle, "a", "a1")["peak"]["kv_cache_usage"] == 0.76
    assert cycle.outputs["models"]["M"]["spare_kv"] == pytest.approx(0.06)


def test_peak_window_is_sixty_seconds(two_replicas, run_cycle):
    # Given a1 at 0.76 at t = 0 and 0.65 from t = 30 on; a2 at 0.72 from t = 30.
    run_cycle(FakeMetrics({"a1": exposition(kv=0.76), "a2": exposition(kv=0.60)}), NOW)
    source = FakeMetrics({"a1": exposition(kv=0.65), "a2": exposition(kv=0.72)})
    run_cycle(source, at(30))
    # When the cycle runs at t = 60, when the 0.76 sample is exactly 60 s old.
    cycle = run_cycle(source, at(60))
    # Then that sample is out of the window: spare KV 0.115, no change.
    assert decision(cycle, "a").target_replicas == 2
    assert pod_input(cycle, "a", "a1")["peak"]["kv_cache_usage"] == 0.65


def test_missing_sample_not_filled_from_peak(two_replicas, run_cycle):
    # Given a1 saturated at t = 0, then its scrape times out at t = 30.
    run_cycle(
        FakeMetrics(
            {
                "a1": exposition(kv=0.95, waiting=9),
                "a2": exposition(kv=0.30),
            }
        ),
        NOW,
    )
    source = FakeMetrics({"a1": "timeout", "a2": exposition(kv=0.30)})
    # When the cycle runs at t = 30.
    cycle = run_cycle(source, at(30))
    # Then a1 stays missing: no peak from history, and wva-v1 holds.
    assert pod_input(cycle, "a", "a1")["peak"] == {
        "kv_cache_usage": None,
        "num_requests_waiting": None,
    }
    assert decision(cycle, "a").target_replicas == 2
    assert "missing_metrics:a1" in decision(cycle, "a").reasons


def test_peak_of_queue_uses_history(two_replicas, run_cycle, settings):
    # Given `wva-v1`, and a1 with 6 waiting thirty seconds ago and 0 now.
    settings.WVA_POLICY = "wva-v1"
    run_cycle(
        FakeMetrics(
            {
                "a1": exposition(kv=0.2, waiting=6),
                "a2": exposition(kv=0.2, waiting=0),
            }
        ),
        NOW,
    )
    source = FakeMetrics(
        {
            "a1": exposition(kv=0.2, waiting=0),
            "a2": exposition(kv=0.2, waiting=0),
        }
    )
    # When the cycle runs at t = 30.
    cycle = run_cycle(source, at(30))
    # Then a1 counts as saturated by its queue peak, so no reduction.
    assert pod_input(cycle, "a", "a1")["peak"]["num_requests_waiting"] == 6.0
    assert cycle.outputs["models"]["M"]["saturated"] == ["a1"]
    assert decision(cycle, "a").target_replicas == 2


@pytest.mark.parametrize(("grace", "expected"), [(30, 30), (None, 30), (299, 299)])
def test_short_grace_period_warns(
    make_model, make_variant, kube, run_cycle, grace, expected
):
    # Given a Deployment whose grace period is below 300 s (unset means 30 s).
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="auto")
    pods = [FakePod("a1"), FakePod("a2"), FakePod("a3")]
    kube.add("a", 3, pods, grace_period_s=grace)
    bodies = {
        "a1": exposition(kv=0.55, waiting=0, running=14),
        "a2": exposition(kv=0.02, waiting=0, running=0),
        "a3": exposition(kv=0.10, waiting=0, running=3),
    }
    # When the cycle runs.
    cycle = run_cycle(FakeMetrics(bodies))
    # Then the variant warns with the grace period and a suggestion.
    warning = conditions("a")["GracePeriodSufficient"]
    assert warning["status"] == "False"
    assert warning["reason"] == "short_grace_period"
    assert warning["grace_period_s"] == expected
    assert "at least 300 s" in warning["message"]
    assert "pre-stop hook that drains the replica" in warning["message"]
    assert "short_grace_period" in decision(cycle, "a").reasons
    # And mode auto still applies the reduction.
    assert Variant.objects.get(name="a").mode == "auto"
    assert ScaleAction.objects.get().state == "applied"
    assert kube.workloads["a"].replicas == 2


def test_long_grace_period_no_warning(make_model, make_variant, kube, run_cycle):
    # Given a Deployment with a 300 s grace period.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")], grace_period_s=300)
    source = FakeMetrics({"a1": exposition(kv=0.5), "a2": exposition(kv=0.5)})
    # When the cycle runs.
    cycle = run_cycle(source)
    # Then there is no grace-period condition or reason.
    assert "GracePeriodSufficient" not in conditions("a")
    assert "short_grace_period" not in decision(cycle, "a").reasons


@pytest.fixture
def silent_third(make_model, make_variant, kube):
    """A in mode auto: a1 and a2 nearly idle; a3 Running, not Ready, never reporting."""
    model = make_model()
    make_variant(model, "a", "H100-80GB", mode="auto")
    silent = FakePod("a3", ready=False, created_at=NOW - dt.timedelta(seconds=300))
    kube.add("a", 3, [FakePod("a1"), FakePod("a2"), silent])
    return FakeMetrics(
        {
            "a1": exposition(kv=0.10, waiting=0),
            "a2": exposition(kv=0.10, waiting=0),
            "a3": "timeout",
        }
    )


def test_silent_replica_holds_until_stale(silent_third, run_cycle, settings):
    # Given `wva-v1`.
    settings.WVA_POLICY = "wva-v1"
    # When the cycle runs when a3 has been silent for exactly 300 s.
    cycle = run_cycle(silent_third, NOW)
    # Then wva-v1 holds: a3 is not reporting.
    assert decision(cycle, "a").target_replicas == 3
    assert "missing_metrics:a3" in decision(cycle, "a").reasons
    assert ScaleAction.objects.count() == 0


def test_silent_replica_reduction_needs_approval(silent_third, kube, run_cycle):
    # Given a3 silent for exactly 300 s at t = 0.
    run_cycle(silent_third, NOW)
    # When the cycle runs at t = 30: silent for 330 s and not Ready.
    cycle = run_cycle(silent_third, at(30))
    # Then a3 is not capacity: a1 and a2 pass the check, so 3 to 2 on a3.
    result = decision(cycle, "a")
    assert result.target_replicas == 2
    assert result.victim_pod == "a3"
    assert "approval_required:silent_replica" in result.reasons
    # And the reduction waits for an approver although the mode is auto.
    action = ScaleAction.objects.get()
    assert (action.state, action.from_replicas, action.to_replicas) == ("pending", 3, 2)
    assert kube.workloads["a"].replicas == 3
    flag = conditions("a")["ReplicasReporting"]
    assert flag["reason"] == "approval_required:silent_replica"


def test_silent_since_last_valid_sample(make_model, make_variant, kube, run_cycle):
    # Given a3 reported at t = 0 and went silent and not Ready after that.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 3, [FakePod("a1"), FakePod("a2"), FakePod("a3")])
    bodies = {f"a{i}": exposition(kv=0.5, waiting=1) for i in (1, 2, 3)}
    run_cycle(FakeMetrics(bodies), NOW)
    kube.workloads["a"].pods[2].ready = False
    source = FakeMetrics({**bodies, "a3": "timeout"})
    # When cycles run at t = 300 and t = 330.
    held = run_cycle(source, at(300))
    flagged = run_cycle(source, at(330))
    # Then a3 counts as silent only after more than 300 s without valid data.
    assert pod_input(held, "a", "a3")["flags"] == []
    flags = pod_input(flagged, "a", "a3")["flags"]
    assert flags == ["approval_required:silent_replica"]


STUCK_WAITING = [213, 78, 40, 32, 20, 12, 0]


@pytest.fixture
def stuck_fleet(make_model, make_variant, kube):
    model = make_model()
    make_variant(model, "a", "L40S", mode="auto")
    kube.add("a", 7, [FakePod(f"a{i}") for i in range(7)])
    return FakeMetrics(
        {
            f"a{i}": exposition(kv=0.0, waiting=w, running=0)
            for i, w in enumerate(STUCK_WAITING)
        }
    )


def test_stuck_queues_flagged_after_five_minutes(stuck_fleet, run_cycle):
    # Given seven replicas with queues, nothing running and no new tokens.
    # When cycles run every 30 s from t = 0 to t = 300.
    cycles = [run_cycle(stuck_fleet, at(step)) for step in range(0, 301, 30)]
    # Then nothing is flagged before 300 s of no progress.
    assert "queue_without_progress" not in decision(cycles[-2], "a").reasons
    assert cycles[-2].outputs["alerts"] == []
    # And at t = 300 the six replicas with a queue are flagged, with an alert.
    last = cycles[-1]
    assert "queue_without_progress" in decision(last, "a").reasons
    flag = conditions("a")["QueuesProgressing"]
    assert flag["reason"] == "queue_without_progress"
    assert flag["message"].startswith("6 replicas")
    assert last.outputs["alerts"] == [
        {
            "reason": "queue_without_progress",
            "variant": "a",
            "pods": ["a0", "a1", "a2", "a3", "a4", "a5"],
        }
    ]
    # And A stays at 7.
    assert decision(last, "a").target_replicas == 7
    assert ScaleAction.objects.count() == 0


@pytest.mark.parametrize(("progress", "expected"), [(False, 2), (True, 3)])
def test_stuck_queues_do_not_scale_up(
    make_model, make_variant, kube, run_cycle, progress, expected
):
    # Given two saturated replicas by queue alone, nothing running.
    model = make_model()
    make_variant(model, "a", "H100-80GB")
    kube.add("a", 2, [FakePod("a1"), FakePod("a2")])
    # When cycles run every 30 s up to t = 300, with or without new tokens.
    cycle = None
    for step in range(0, 301, 30):
        tokens = 100.0 + (step if progress else 0)
        source = FakeMetrics(
            {
                name: exposition(kv=0.0, waiting=10, running=0, generated=tokens)
                for name in ("a1", "a2")
            }
        )
        cycle = run_cycle(source, at(step))
    # Then a stuck model gets no scale-up; one making progress does.
    assert decision(cycle, "a").target_replicas == expected
    stuck = "queue_without_progress" in decision(cycle, "a").reasons
    assert stuck is not progress


def seed_samples(
    variant: Variant, pod: str, seconds: list[int], **values: float
) -> None:
    """Store earlier samples of one pod at NOW minus each number of seconds."""
    for back in seconds:
        moment = NOW - dt.timedelta(seconds=back)
        cycle = ControlCycle.objects.create(started_at=moment, policy="wva-v1")
        MetricSample.objects.create(
            cycle=cycle, variant=variant, pod=pod, sampled_at=moment, **values
        )


def test_stuck_queue_reduction_needs_approval(
    make_model, make_variant, kube, run_cycle
):
    # Given a0 with 3 waiting, none running and no new tokens for 300 s,
    # and a1 and a2 nearly idle: the reduction check passes (spare queue 3.5).
    model = make_model()
    variant = make_variant(model, "a", "L40S", mode="auto")
    kube.add("a", 3, [FakePod("a0"), FakePod("a1"), FakePod("a2")])
    seed_samples(
        variant,
        "a0",
        [300, 200, 100],
        kv_cache_usage=0.0,
        num_requests_waiting=3,
        num_requests_running=0,
        generation_tokens_total=100.0,
    )
    source = FakeMetrics(
        {
            "a0": exposition(kv=0.0, waiting=3, running=0),
            "a1": exposition(kv=0.05, waiting=0, running=1),
            "a2": exposition(kv=0.05, waiting=0, running=1),
        }
    )
    # When the cycle runs.
    cycle = run_cycle(source, NOW)
    # Then the reduction 3 to 2 is proposed but waits for an approver.
    assert decision(cycle, "a").target_replicas == 2
    assert "queue_without_progress" in decision(cycle, "a").reasons
    action = ScaleAction.objects.get()
    assert (action.state, action.to_replicas) == ("pending", 2)
    assert kube.workloads["a"].replicas == 3
