"""Demand from pod counters, its forecast and the learned compute bound in the cycle.

The first tests drive the cycle with the fake cluster and fixed
expositions, so every rate is known exactly. The last ones run the `wva`
policy against the in-process emulated cluster on a clock that follows
the emulator's simulated time.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from fleetsim.emulator import Emulator
from tests.control.fakes import NOW, FakeKube, FakeMetrics, FakePod
from wva_web.catalog.models import InferenceModel, Policy
from wva_web.control import cycle_demand, cycle_wva
from wva_web.control.cycle import CycleService, scrape_targets
from wva_web.control.cycle_view import VariantView
from wva_web.control.models import (
    ActionState,
    ControlCycle,
    Decision,
    DemandSample,
    ScaleAction,
    VariantState,
)
from wva_web.dashboard import explain
from wva_web.integrations.kube import Actuator

PODS = ("a1", "a2", "a3", "b1", "b2")
# Latency profiles of L40S and H100-80GB (data/accelerators.csv), in ms.
PROFILES = {
    "L40S": {
        "alpha": 23.0,
        "beta": 0.10,
        "gamma": 23.0,
        "delta": 0.12,
        "kv_tokens": 191000.0,
    },
    "H100-80GB": {
        "alpha": 7.0,
        "beta": 0.02,
        "gamma": 7.0,
        "delta": 0.03,
        "kv_tokens": 451000.0,
    },
}


def counters_body(
    finished: float,
    kv: float = 0.1,
    waiting: float = 0.0,
    running: float = 2.0,
    prompt_tokens: float = 600.0,
    output_tokens: float = 150.0,
) -> str:
    """Prometheus text of one vLLM pod that has finished `finished` requests.

    The finished requests are split over two `finished_reason` values, and
    the token histograms hold `finished` requests of the given lengths.
    """
    labels = 'model_name="m",engine="0"'
    stop = math.floor(finished * 0.75)
    lines = [
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{{{labels}}} {kv}",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{labels}}} {waiting}",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{labels}}} {running}",
        "# TYPE vllm:request_success counter",
        f'vllm:request_success_total{{{labels},finished_reason="stop"}} {stop}',
        f'vllm:request_success_total{{{labels},finished_reason="length"}} '
        f"{finished - stop}",
    ]
    for name, length in (
        ("vllm:request_prompt_tokens", prompt_tokens),
        ("vllm:request_generation_tokens", output_tokens),
    ):
        lines += [
            f"# TYPE {name} histogram",
            f'{name}_bucket{{{labels},le="+Inf"}} {finished}',
            f"{name}_count{{{labels}}} {finished}",
            f"{name}_sum{{{labels}}} {finished * length}",
        ]
    return "\n".join(lines) + "\n"


def source(finished: dict[str, float], **values: Any) -> FakeMetrics:
    """Metrics of every pod; a pod missing from `finished` times out."""
    return FakeMetrics(
        {pod: counters_body(finished[pod], **values) for pod in finished}
    )


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def decision(cycle: ControlCycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


@pytest.fixture
def model(make_model: Any, make_variant: Any, kube: FakeKube) -> InferenceModel:
    """Model M under `wva`: A on L40S at 3 replicas, B on H100-80GB at 2."""
    created = make_model()
    InferenceModel.objects.filter(pk=created.pk).update(policy=Policy.WVA)
    make_variant(created, "a", "L40S", profile=PROFILES["L40S"])
    make_variant(created, "b", "H100-80GB", profile=PROFILES["H100-80GB"])
    kube.add("a", 3, [FakePod(name) for name in PODS[:3]])
    kube.add("b", 2, [FakePod(name) for name in PODS[3:]])
    return created


def uniform(finished: float) -> dict[str, float]:
    return dict.fromkeys(PODS, finished)


def demand_of(cycle: ControlCycle) -> DemandSample:
    return DemandSample.objects.get(cycle=cycle)


def test_first_cycle_demand_unknown(model: InferenceModel, run_cycle: Any) -> None:
    # Given pods that were created an hour ago and have no stored sample.
    # When the first cycle runs.
    cycle = run_cycle(source(uniform(100)), at(0))
    # Then the demand is unknown and the policy uses its saturation rules.
    sample = demand_of(cycle)
    assert not sample.known
    assert sample.reason == "no_previous_sample:a1"
    assert "insufficient_data" in decision(cycle, "a").reasons


def test_counter_deltas_give_rates(model: InferenceModel, run_cycle: Any) -> None:
    # Given a first cycle, then 30 more finished requests per pod in 30 s.
    run_cycle(source(uniform(100)), at(0))
    # When the next cycle runs.
    cycle = run_cycle(source(uniform(130)), at(30))
    # Then five pods at 1 request/s give 5 requests/s and the token lengths.
    sample = demand_of(cycle)
    assert sample.known
    assert sample.completion_rate == pytest.approx(5.0)
    assert sample.arrival_rate == pytest.approx(5.0)
    assert sample.avg_input_tokens == pytest.approx(600.0)
    assert sample.avg_output_tokens == pytest.approx(150.0)
    assert sample.interval_s == pytest.approx(30.0)
    assert not sample.idle


def test_known_demand_sizes_by_slo(model: InferenceModel, run_cycle: Any) -> None:
    # Given two cycles with traffic.
    run_cycle(source(uniform(100)), at(0))
    # When the second cycle decides.
    cycle = run_cycle(source(uniform(130)), at(30))
    # Then `wva` sizes by SLO and the decision inputs show the demand.
    row = decision(cycle, "a")
    assert "sized_by_slo" in row.reasons
    assert "insufficient_data" not in row.reasons
    demand = row.analysis["inputs"]["demand"]
    assert demand["known"] is True
    assert demand["observed_arrival_rate"] == pytest.approx(5.0)
    assert demand["arrival_rate"] >= demand["observed_arrival_rate"]
    assert demand["horizon_s"] == 120.0
    assert cycle.outputs["models"]["M"]["demand"]["completion_rate"] == (
        pytest.approx(5.0)
    )


def test_queue_growth_adds_to_arrivals(model: InferenceModel, run_cycle: Any) -> None:
    # Given a first cycle with empty queues.
    run_cycle(source(uniform(100)), at(0))
    # When every queue has grown by 6 requests in 30 s.
    cycle = run_cycle(source(uniform(130), waiting=6.0), at(30))
    # Then arrivals are completions plus 5 pods * 6 / 30 s = 1 request/s.
    sample = demand_of(cycle)
    assert sample.completion_rate == pytest.approx(5.0)
    assert sample.arrival_rate == pytest.approx(6.0)


def test_counter_reset_counts_from_zero(model: InferenceModel, run_cycle: Any) -> None:
    # Given a first cycle, then pod a1 restarted and counts from 10 again.
    run_cycle(source(uniform(100)), at(0))
    finished = uniform(130)
    finished["a1"] = 10
    # When the next cycle runs.
    cycle = run_cycle(source(finished), at(30))
    # Then a1's 10 requests since its restart count, as rate() counts them:
    # four pods at 1 request/s plus 10 / 30 s.
    sample = demand_of(cycle)
    assert sample.known
    assert sample.reset_pods == ["a1"]
    assert sample.completion_rate == pytest.approx(4.0 + 10.0 / 30.0)
    assert sample.avg_input_tokens == pytest.approx(600.0)


def test_reset_of_every_pod_still_known(model: InferenceModel, run_cycle: Any) -> None:
    # Given every pod restarted between two cycles and finished 5 requests.
    run_cycle(source(uniform(100)), at(0))
    # When the next cycle runs.
    cycle = run_cycle(source(uniform(5)), at(30))
    # Then the demand counts those requests, with every pod named.
    sample = demand_of(cycle)
    assert sample.known
    assert sample.completion_rate == pytest.approx(5 * 5 / 30.0)
    assert sorted(sample.reset_pods) == list(PODS)


def test_implausible_counter_makes_demand_unknown(
    model: InferenceModel, run_cycle: Any
) -> None:
    # Given a pod whose request counter jumps by 1e300 in 30 s.
    run_cycle(source(uniform(100)), at(0))
    finished = uniform(130)
    finished["a2"] = 1e300
    # When the next cycle runs.
    cycle = run_cycle(source(finished), at(30))
    # Then the demand is unknown rather than sized for 3e298 requests/s.
    sample = demand_of(cycle)
    assert not sample.known
    assert sample.reason == "implausible_counters:a2"
    assert "insufficient_data" in decision(cycle, "a").reasons


def test_idle_window_keeps_token_lengths(model: InferenceModel, run_cycle: Any) -> None:
    # Given traffic of 600-token prompts, then a window with no finished request.
    run_cycle(source(uniform(100)), at(0))
    run_cycle(source(uniform(130)), at(30))
    # When the next cycle reads the same counters.
    cycle = run_cycle(source(uniform(130), running=0.0), at(60))
    # Then the demand is no traffic, not an error, with the last token lengths.
    sample = demand_of(cycle)
    assert sample.known
    assert sample.idle
    assert sample.completion_rate == 0.0
    assert sample.arrival_rate == 0.0
    assert sample.avg_input_tokens == pytest.approx(600.0)
    assert sample.avg_output_tokens == pytest.approx(150.0)


def test_missing_sample_makes_demand_unknown(
    model: InferenceModel, run_cycle: Any
) -> None:
    # Given idle traffic in which `wva` would remove a replica with full data.
    run_cycle(source(uniform(100)), at(0))
    finished = uniform(101)
    del finished["a3"]
    # When the next cycle cannot read pod a3.
    cycle = run_cycle(source(finished), at(30))
    # Then the demand is unknown, no demand reaches the policy, nothing shrinks.
    sample = demand_of(cycle)
    assert not sample.known
    assert sample.reason == "missing_counters:a3"
    assert "insufficient_data" in decision(cycle, "a").reasons
    assert decision(cycle, "a").target_replicas == 3
    assert decision(cycle, "b").target_replicas == 2
    reductions = [
        action
        for action in ScaleAction.objects.filter(decision__cycle=cycle)
        if action.to_replicas < action.from_replicas
    ]
    assert reductions == []


def test_full_data_idle_load_reduces(model: InferenceModel, run_cycle: Any) -> None:
    # Given the same idle traffic with every pod read.
    run_cycle(source(uniform(100)), at(0))
    # When the next cycle runs.
    cycle = run_cycle(source(uniform(101)), at(30))
    # Then `wva` removes a replica: the missing pod above is what held it.
    targets = [decision(cycle, name).target_replicas for name in ("a", "b")]
    assert targets != [3, 2]
    assert sum(targets) < 5


def test_applied_increase_holds_reduction(
    model: InferenceModel, run_cycle: Any
) -> None:
    # Given B grew from 1 to 2 replicas one minute ago.
    ScaleAction.objects.create(
        variant=model.variants.get(name="b"),
        created_at=at(-90),
        from_replicas=1,
        to_replicas=2,
        state=ActionState.APPLIED,
        applied_at=at(-60),
    )
    run_cycle(source(uniform(100)), at(0))
    # When idle cycles follow.
    cycle = run_cycle(source(uniform(101)), at(30))
    # Then B is held by the stabilisation window.
    row = decision(cycle, "b")
    assert row.target_replicas == 2
    assert "stabilized" in row.reasons


def test_queue_at_threshold_learns_bound(model: InferenceModel, run_cycle: Any) -> None:
    # Given empty queues, then pod a1's queue reaches 5 (the threshold) at 50% KV.
    run_cycle(source(uniform(100)), at(0))
    bodies = {pod: counters_body(130) for pod in PODS}
    bodies["a1"] = counters_body(130, kv=0.5, waiting=5.0)
    # When the next cycle stores its samples.
    run_cycle(FakeMetrics(bodies), at(30))
    # Then A's learned compute bound is the tokens a1 had in use.
    state = VariantState.objects.get(variant__name="a")
    assert state.learned_compute_tokens == pytest.approx(0.5 * 191000.0)
    assert state.learned_compute_count == 1
    assert VariantState.objects.get(variant__name="b").learned_compute_count == 0


def test_learned_bound_reaches_policy(model: InferenceModel) -> None:
    # Given a learned compute bound of 40,000 tokens on A and an unknown demand.
    variant_a = model.variants.get(name="a")
    history = cycle_wva.ModelHistory(
        demand=cycle_demand.unknown("no_previous_sample:a1"),
        learned_compute_tokens={variant_a.pk: 40000.0},
    )
    views = [VariantView(variant=v, current=1) for v in model.variants.all()]
    # When the cycle builds the optimizer state.
    document = cycle_wva.state_json(model, views, {}, {}, NOW, history=history)
    # Then A's profile carries the bound, B's has none, and no demand is sent.
    profiles = {v["name"]: v["profile"] for v in document["variants"]}
    assert profiles["a"]["learned_compute_tokens"] == 40000.0
    assert "learned_compute_tokens" not in profiles["b"]
    assert document["demand"] == {}


# The gateway's request rate.


def views_at(
    kube: FakeKube, model: InferenceModel, metrics: FakeMetrics, when: dt.datetime
) -> list[VariantView]:
    """Read the model's variants and samples as a cycle at `when` reads them."""
    kube.clock = when
    metrics.at = when
    actuator = Actuator(apps=kube, core=kube, autoscaling=kube, dry_run=False)
    views = []
    for variant in model.variants.order_by("name"):
        view = VariantView(
            variant=variant,
            current=actuator.read_replicas(variant),
            pods=actuator.list_pods(variant),
        )
        view.samples = metrics.scrape(scrape_targets(view, needs_endpoint=False))
        views.append(view)
    return views


def gateway_demand(
    model: InferenceModel,
    kube: FakeKube,
    run_cycle: Any,
    gateway_rates: dict[str, float] | None,
) -> cycle_demand.ModelDemand:
    """Measure 5 requests/s at the pods, with `gateway_rates` from the gateway."""
    run_cycle(source(uniform(100)), at(0))
    views = views_at(kube, model, source(uniform(130)), at(30))
    return cycle_demand.model_demand(model, views, at(30), gateway_rates)


@pytest.mark.parametrize(
    ("gateway_rate", "observed", "includes_rejected"),
    [(9.0, 9.0, True), (2.0, 5.0, False)],
    ids=["above-pods", "below-pods"],
)
def test_gateway_rate_against_pods(
    model: InferenceModel,
    kube: FakeKube,
    run_cycle: Any,
    gateway_rate: float,
    observed: float,
    includes_rejected: bool,
) -> None:
    # Given the pods finish 5 requests/s and the gateway counts `gateway_rate`.
    demand = gateway_demand(model, kube, run_cycle, {"M": gateway_rate})
    # Then the larger rate is observed, and both are recorded.
    recorded = demand.as_json()
    assert recorded["observed_arrival_rate"] == pytest.approx(observed)
    assert recorded["pod_arrival_rate"] == pytest.approx(5.0)
    assert recorded["gateway_arrival_rate"] == pytest.approx(gateway_rate)
    # And the smoothing runs on the observed rate.
    assert demand.smoothed_rate == pytest.approx(observed)
    assert recorded["arrival_rate"] >= observed
    # And only a gateway count that covers the pods' rate includes the
    # rejected requests for the policy.
    assert demand.state_json()["includes_rejected"] is includes_rejected


@pytest.mark.parametrize(
    "gateway_rates", [None, {}, {"other-model": 50.0}], ids=["none", "empty", "other"]
)
def test_without_gateway_rate_pods_alone(
    model: InferenceModel,
    kube: FakeKube,
    run_cycle: Any,
    gateway_rates: dict[str, float] | None,
) -> None:
    # Given no gateway rate for model M.
    demand = gateway_demand(model, kube, run_cycle, gateway_rates)
    # Then the demand is the pods' alone, as without a gateway.
    recorded = demand.as_json()
    assert recorded["observed_arrival_rate"] == pytest.approx(5.0)
    assert recorded["pod_arrival_rate"] == pytest.approx(5.0)
    assert recorded["gateway_arrival_rate"] is None
    assert demand.smoothed_rate == pytest.approx(5.0)
    assert demand.state_json()["includes_rejected"] is False


def test_gateway_rate_keeps_unknown_demand(
    model: InferenceModel, kube: FakeKube
) -> None:
    # Given pods without an earlier sample, so their demand is unknown.
    views = views_at(kube, model, source(uniform(100)), at(0))
    # When the gateway counts requests for the model.
    demand = cycle_demand.model_demand(model, views, at(0), {"M": 9.0})
    # Then the demand stays unknown and sends no rate.
    assert not demand.known
    assert demand.sent_arrival_rate is None
    assert demand.as_json()["pod_arrival_rate"] is None


def test_gateway_sized_demand_explained(
    model: InferenceModel, kube: FakeKube, run_cycle: Any
) -> None:
    # Given a decision whose demand came from the gateway.
    higher = gateway_demand(model, kube, run_cycle, {"M": 9.0}).as_json()
    # Then its explanation names the gateway as the source.
    keys = [fact.key for fact in explain.input_facts({"demand": higher})]
    assert "gateway_arrival_rate" in keys
    assert "observed_from_gateway" in keys
    # And a gateway rate below the pods' adds no such line.
    lower = dict(higher, gateway_arrival_rate=2.0)
    keys = [fact.key for fact in explain.input_facts({"demand": lower})]
    assert "observed_from_gateway" not in keys


class GatewayMetrics(FakeMetrics):
    """FakeMetrics with the gateway's request rates of a Prometheus source."""

    def __init__(self, pods: dict[str, str], rates: dict[str, float]) -> None:
        super().__init__(pods)
        self.gateway_request_rates = rates


def test_cycle_passes_gateway_rate(model: InferenceModel, run_cycle: Any) -> None:
    # Given pods at 5 requests/s and a gateway that counts 9 for model M.
    run_cycle(source(uniform(100)), at(0))
    bodies = {pod: counters_body(130) for pod in PODS}
    # When the cycle runs with that metric source.
    cycle = run_cycle(GatewayMetrics(bodies, {"M": 9.0}), at(30))
    # Then the stored demand observed the gateway's rate.
    sample = demand_of(cycle)
    assert sample.arrival_rate == pytest.approx(9.0)
    demand = decision(cycle, "a").analysis["inputs"]["demand"]
    assert demand["pod_arrival_rate"] == pytest.approx(5.0)
    assert demand["gateway_arrival_rate"] == pytest.approx(9.0)
    assert cycle.inputs["gateway_request_rates"] == {"M": 9.0}


# The emulated cluster.

RAMP_START_RPS = 2.0
RAMP_SLOPE = 0.06  # requests/s gained per second
PROMPT_TOKENS = 1000
OUTPUT_TOKENS = 200


def write_ramp_trace(path: Path, duration_s: float) -> Path:
    """Write a trace whose rate rises linearly from RAMP_START_RPS by RAMP_SLOPE/s.

    Request k arrives when the integral of the rate reaches k.
    """
    start = dt.datetime(2023, 11, 16, 18, 0, 0, tzinfo=dt.UTC)
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    k = 0
    while True:
        t = (-RAMP_START_RPS + math.sqrt(RAMP_START_RPS**2 + 2 * RAMP_SLOPE * k)) / (
            RAMP_SLOPE
        )
        if t > duration_s:
            break
        stamp = (start + dt.timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f")
        rows.append(f"{stamp},{PROMPT_TOKENS},{OUTPUT_TOKENS}")
        k += 1
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def ramp_trace(tmp_path: Path) -> Path:
    return write_ramp_trace(tmp_path / "ramp.csv", duration_s=900.0)


def emulated_cycles(
    tmp_path: Path,
    trace: Path,
    settings: Any,
    cycles: int,
    stop: Callable[[ControlCycle], bool] = lambda cycle: False,
) -> list[ControlCycle]:
    """Run up to `cycles` control cycles, 30 simulated seconds apart, under `wva`.

    The cycle's clock is the emulator's simulated time, so counter deltas
    and sample times agree. Every variant stays in mode approval, so the
    fleet keeps its size and each cycle reads the same replicas.
    """
    with Emulator(
        "data/demo_fleet.json",
        tmp_path / "emulator",
        port=0,
        clock="manual",
        compression=1.0,
        startup_delay_s=30.0,
        seed=1,
        trace=trace,
    ) as emu:
        settings.WVA_KUBECONFIG = str(emu.kubeconfig_path)
        settings.WVA_DRY_RUN = False
        call_command("load_demo", stdout=io.StringIO())
        InferenceModel.objects.update(policy=Policy.WVA)

        def clock() -> dt.datetime:
            return emu.clock.epoch + dt.timedelta(seconds=emu.cluster.now)

        done: list[ControlCycle] = []
        for _ in range(cycles):
            emu.advance(30.0)
            cycle = CycleService(clock=clock).run()
            assert cycle is not None
            done.append(cycle)
            if stop(cycle):
                break
    return done


def grows(cycle: ControlCycle) -> bool:
    return any(
        row.target_replicas > row.current_replicas for row in cycle.decisions.all()
    )


def clear_history() -> None:
    ControlCycle.objects.all().delete()
    ScaleAction.objects.all().delete()
    VariantState.objects.all().delete()


@pytest.mark.emulator
def test_emulated_traffic_sizes_by_slo(
    db: None, tmp_path: Path, ramp_trace: Path, settings: Any
) -> None:
    # Given the demo fleet under `wva` with the ramp at 2 to 4 requests/s.
    # When two cycles run 30 s apart.
    cycles = emulated_cycles(tmp_path, ramp_trace, settings, cycles=2)
    # Then the second decision is sized by SLO from the measured demand.
    rows = list(cycles[-1].decisions.all())
    assert rows
    for row in rows:
        assert "sized_by_slo" in row.reasons
        assert "insufficient_data" not in row.reasons
    demand = rows[0].analysis["inputs"]["demand"]
    assert demand["known"] is True
    # The trace offers 2 + 0.06 t requests/s: 141 requests between 30 and 60 s.
    assert demand["observed_arrival_rate"] == pytest.approx(4.7, abs=0.3)
    assert demand["avg_input_tokens"] == pytest.approx(PROMPT_TOKENS)
    assert demand["avg_output_tokens"] == pytest.approx(OUTPUT_TOKENS)


@pytest.mark.emulator
def test_forecast_starts_scale_up_earlier(
    db: None, tmp_path: Path, ramp_trace: Path, settings: Any
) -> None:
    # Given the ramp with no forecast horizon.
    settings.WVA_STARTUP_DELAY_S = 0.0
    without = emulated_cycles(tmp_path / "flat", ramp_trace, settings, 25, grows)
    without_grows = grows(without[-1])
    clear_history()
    # When the forecast looks one 120 s start-up delay ahead.
    settings.WVA_STARTUP_DELAY_S = 120.0
    ahead = emulated_cycles(tmp_path / "ahead", ramp_trace, settings, 25, grows)
    # Then both scale up, and the forecast does it at least two cycles earlier.
    assert without_grows
    assert grows(ahead[-1])
    assert len(ahead) + 2 <= len(without)
    demand = DemandSample.objects.get(cycle=ahead[-1])
    assert demand.trend_per_s is not None
    assert demand.trend_per_s > 0
    assert demand.sent_arrival_rate > demand.arrival_rate
