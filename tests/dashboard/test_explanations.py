"""Decision explanations on the cycle page, the variant page and the REST API."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pytest

from tests.control.fakes import FakeKube, FakeMetrics, FakePod, exposition
from tests.dashboard.conftest import World, make_cycle
from wva_web.catalog.models import InferenceModel, Policy, Variant
from wva_web.control.cycle import CycleService
from wva_web.control.models import ControlCycle, Decision
from wva_web.dashboard.reasons import reason_text
from wva_web.integrations.kube import Actuator

# Analysis of a `wva` decision on the SLO path, in the shape the cycle stores.
WVA_ANALYSIS: dict[str, Any] = {
    "policy": "wva",
    "solver": "milp",
    "model": {
        "policy": "wva",
        "solver": "milp",
        "success": True,
        "status": 0,
        "solver_message": "optimal",
        "path": "slo",
        "spare_kv": 0.0625,
        "spare_queue": 2.5,
        "required_rps": 41.25,
        "supply_rps": 36.0,
        "spare_rps": 0.0,
        "unserved_rps": 3.75,
        "reasons": ["scale_up:slo"],
        "demand": {
            "observed_arrival_rate": 30.5,
            "forecast_rate": 33.0,
            "arrival_rate": 33.0,
            "completion_rate": 29.5,
            "avg_input_tokens": 812.0,
            "avg_output_tokens": 196.0,
        },
    },
    "inputs": {
        "capacity_rps": 9.0,
        "on_the_way": 1,
        "ready_with_data": 4,
        "spare_kv": 0.0625,
        "spare_queue": 2.5,
    },
    "victim_pods": ["alpha-h100-pod-2", "alpha-h100-pod-4"],
    "peaks": {
        "alpha-h100-pod-1": {"kv_cache_usage": 0.815, "num_requests_waiting": 7.0},
        "alpha-h100-pod-2": {"kv_cache_usage": 0.42, "num_requests_waiting": 1.0},
    },
}
REASONS = ["sized_by_slo", "scale_up:slo", "no_free_gpu:H100-80GB"]
HPA_REASONS = ["proposal:kv_cache_usage=6", "scale_up_limit"]


@pytest.fixture
def explained(world: World) -> Decision:
    """A newer cycle whose decision for alpha carries a full `wva` analysis."""
    cycle = make_cycle(world.now)
    return Decision.objects.create(
        cycle=cycle,
        variant=world.alpha,
        current_replicas=4,
        ready_replicas=4,
        target_replicas=5,
        hpa_target_replicas=6,
        hpa_reasons=HPA_REASONS,
        reasons=REASONS,
        bound_by="gpu_budget",
        victim_pod="",
        analysis=WVA_ANALYSIS,
        message="wants 6, capped at 5",
    )


def page(world: World, url: str, user: str = "viewer_a") -> str:
    response = world.client(user).get(url)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def explanation_block(body: str) -> str:
    start = body.index('<details class="explanation"')
    return body[start : body.index("</details>", start)]


PAGE_FACTS = (
    ("policy", 'data-policy="wva"'),
    ("solver", '<span class="solver">milp</span>'),
    ("solver message", "milp (optimal)"),
    ("bound by", "<code>gpu_budget</code> <span"),
    ("bound by text", "(limited by free GPUs)"),
    ("reason text", "(scale up: latency targets need more replicas)"),
    ("reason code", "<code>no_free_gpu:H100-80GB</code>"),
    ("HPA target", '<dd class="explain-hpa">6:'),
    ("HPA reason", "<code>proposal:kv_cache_usage=6</code>"),
    ("HPA reason text", "(limited by the scale-up rate)"),
    ("unserved demand", '<dd class="explain-unserved">3.75 req/s</dd>'),
    ("victims", "<code>alpha-h100-pod-2</code>, <code>alpha-h100-pod-4</code>"),
    ("peak KV", '<dd class="explain-peak-kv">81.5%</dd>'),
    ("peak queue", '<dd class="explain-peak-queue">7</dd>'),
    ("pod peak", '<tr data-pod="alpha-h100-pod-2"><td><code>alpha-h100-pod-2</code>'),
    (
        "demand observed",
        '<td>model: demand observed</td><td class="num">30.5 req/s</td>',
    ),
    ("demand forecast", '<td>model: demand forecast</td><td class="num">33 req/s</td>'),
    (
        "capacity",
        '<td>this variant: capacity per replica</td><td class="num">9 req/s</td>',
    ),
    ("required", '<tr data-input="required_rps"><td>model: required capacity'),
    ("required value", '<td class="num">41.25 req/s</td>'),
    ("supply", '<tr data-input="supply_rps">'),
    ("spare", '<tr data-input="spare_rps">'),
    (
        "spare KV",
        "<td>model: mean spare KV-cache of non-saturated replicas</td>"
        '<td class="num">6.2%</td>',
    ),
    (
        "spare queue",
        "<td>model: mean spare queue of non-saturated replicas</td>"
        '<td class="num">2.5 requests</td>',
    ),
    ("input tokens", '<td class="num">812 tokens</td>'),
    (
        "replicas on the way",
        '<td>this variant: replicas on the way</td><td class="num">1 replica</td>',
    ),
)


@pytest.mark.parametrize(("fact", "text"), PAGE_FACTS, ids=[f for f, _ in PAGE_FACTS])
def test_cycle_page_shows_fact(
    world: World, explained: Decision, fact: str, text: str
) -> None:
    # Given a decision with a full `wva` analysis.
    # When a viewer of its team opens the cycle page.
    body = page(world, f"/cycles/{explained.cycle_id}/")
    # Then the explanation of the decision shows the fact.
    assert text in explanation_block(body), fact


@pytest.mark.parametrize(("fact", "text"), PAGE_FACTS, ids=[f for f, _ in PAGE_FACTS])
def test_variant_page_shows_fact(
    world: World, explained: Decision, fact: str, text: str
) -> None:
    # Given the same decision, the variant's latest.
    # When a viewer opens the variant page.
    body = page(world, f"/variants/{world.alpha.pk}/")
    # Then its latest decision is explained with the same fact.
    assert text in explanation_block(body), fact


def test_cycle_table_names_policy(world: World, explained: Decision) -> None:
    # Given the decision under `wva` in a cycle whose default is `wva-v1`.
    # When the cycle page is opened.
    body = page(world, f"/cycles/{explained.cycle_id}/")
    # Then the compact table names the decision's own policy and solver.
    assert '<td class="policy">wva (milp)</td>' in body


def test_variant_page_names_policy(world: World, explained: Decision) -> None:
    # When the variant page is opened.
    body = page(world, f"/variants/{world.alpha.pk}/")
    # Then the latest decision's summary line names the policy and solver.
    assert '<span id="decision-policy">wva</span>' in body
    assert "(solver milp)" in body


def test_old_row_falls_back_to_cycle_policy(world: World) -> None:
    # Given the fixture's decision for bravo, stored without a policy.
    # When its team's viewer opens the cycle page.
    body = page(world, f"/cycles/{world.cycle.pk}/", "viewer_b")
    # Then the cycle's policy is shown.
    assert 'data-policy="wva-v1"' in body


def test_other_team_explanation_hidden(world: World, explained: Decision) -> None:
    # When a viewer of team b opens the cycle page of alpha's decision.
    body = page(world, f"/cycles/{explained.cycle_id}/", "viewer_b")
    # Then none of alpha's inputs appear.
    assert "alpha-h100-pod-2" not in body
    assert "41.25" not in body


def api_explanation(world: World, decision: Decision) -> dict[str, Any]:
    response = world.client("viewer_a").get(f"/api/v1/decisions/{decision.pk}/")
    assert response.status_code == 200
    return response.json()["explanation"]


def test_api_explanation_policy_and_solver(world: World, explained: Decision) -> None:
    # When the decision is read through the API.
    data = api_explanation(world, explained)
    # Then the explanation names policy, solver and its message.
    assert data["policy"] == "wva"
    assert data["solver"] == "milp"
    assert data["solver_message"] == "optimal"


def test_api_explanation_reasons(world: World, explained: Decision) -> None:
    data = api_explanation(world, explained)
    # Then each reason code comes with its text, as on the pages.
    assert data["reasons"][1] == {
        "code": "scale_up:slo",
        "text": "scale up: latency targets need more replicas",
    }
    assert data["bound_by"] == {"code": "gpu_budget", "text": "limited by free GPUs"}
    assert data["hpa"]["target_replicas"] == 6
    assert [r["code"] for r in data["hpa"]["reasons"]] == HPA_REASONS


def test_api_explanation_inputs(world: World, explained: Decision) -> None:
    data = api_explanation(world, explained)
    inputs = {item["key"]: item for item in data["inputs"]}
    # Then demand, capacity, supply, required and spare capacity are listed.
    assert inputs["observed_arrival_rate"]["value"] == 30.5
    assert inputs["forecast_rate"]["value"] == 33.0
    assert inputs["capacity_rps"]["value"] == 9.0
    assert inputs["capacity_rps"]["unit"] == "req/s"
    assert inputs["supply_rps"]["value"] == 36.0
    assert inputs["required_rps"]["value"] == 41.25
    assert inputs["spare_rps"]["value"] == 0.0
    assert inputs["spare_kv"]["unit"] == "fraction"


def test_api_explanation_peaks_and_victims(world: World, explained: Decision) -> None:
    data = api_explanation(world, explained)
    # Then the peaks, unserved demand and victims are those of the pages.
    assert data["peaks"]["kv_cache_usage"] == 0.815
    assert data["peaks"]["num_requests_waiting"] == 7.0
    assert len(data["peaks"]["pods"]) == 2
    assert data["unserved_rps"] == 3.75
    assert data["victim_pods"] == ["alpha-h100-pod-2", "alpha-h100-pod-4"]


def test_api_cycle_decisions_explained(world: World, explained: Decision) -> None:
    # When the cycle is read through the API.
    response = world.client("viewer_a").get(f"/api/v1/cycles/{explained.cycle_id}/")
    # Then its decision carries the same explanation.
    (row,) = response.json()["decisions"]
    assert row["explanation"]["policy"] == "wva"
    assert row["explanation"]["solver"] == "milp"


def test_api_list_explains_on_expand(world: World, explained: Decision) -> None:
    # When the decisions are listed, with and without `?expand=1`.
    client = world.client("viewer_a")
    short = client.get("/api/v1/decisions/").json()["results"]
    full = client.get("/api/v1/decisions/?expand=1").json()["results"]
    # Then only the expanded list carries the explanations, like `analysis`.
    assert all("explanation" not in row for row in short)
    row = next(row for row in full if row["id"] == explained.pk)
    assert row["explanation"]["solver"] == "milp"


def test_unknown_input_still_listed(world: World, explained: Decision) -> None:
    # Given an input the pages have no label for.
    analysis = dict(WVA_ANALYSIS)
    analysis["inputs"] = {**WVA_ANALYSIS["inputs"], "queue_share": 0.25}
    Decision.objects.filter(pk=explained.pk).update(analysis=analysis)
    # When the cycle page is opened.
    body = page(world, f"/cycles/{explained.cycle_id}/")
    # Then it is listed under its own name.
    assert '<tr data-input="queue_share"><td>queue share</td>' in body


HPA_CODES = (
    "proposal:num_requests_waiting=6",
    "within_tolerance:kv_cache_usage",
    "direction_flipped:num_requests_waiting",
    "invalid_metric:kv_cache_usage",
    "hold:invalid_metric_on_scale_down",
    "no_valid_metric",
    "no_metrics",
    "scaling_disabled",
    "stabilized",
    "scale_up_limit",
    "scale_down_limit",
    "capped_by_max",
    "raised_to_min",
    "no_change",
    "no_hpa_metrics",
    "scale_up:hpa",
    "scale_down:hpa",
)
WVA_CODES = (
    "no_demand:arrival_rate,avg_input_tokens",
    "no_demand:token_lengths",
    "no_service_class",
    "no_profile",
    "no_profile:a",
    "saturated:a1",
    "pending:a2",
    "pending:a=1",
    "scale_down:too_few_non_saturated",
    "scale_down:unsafe",
    "scale_down:spare_capacity",
    "scale_down:no_spare_tokens",
    "scale_down:safe",
    "transition_pending",
    "missing_metrics:a1",
    "missing_samples:a=1",
    "missing_signal:kv_cache_usage",
    "non_finite:kv_cache_usage",
    "out_of_range:num_requests_waiting",
    "stale_metrics:a1",
    "unschedulable:a3",
    "slo_unreachable:a",
    "sized_by_slo",
    "sized_by_batch_slots",
    "sized_by_kv_tokens",
    "allocation_failed",
    "scale_up:slo",
    "scale_up:spare_kv",
    "scale_up:spare_queue",
    "inventory_unknown",
    "no_free_gpu:L4",
    "insufficient_data",
    "above_max",
    "no_candidate",
    "invalid_input:variants[0].max_replicas: must be at least 0",
)
BOUND_BY = (
    "max_replicas",
    "min_replicas",
    "gpu_budget",
    "missing_data",
    "stabilization",
    "scale_down_limit",
    "scale_up_limit",
    "transition",
    "pinned",
    "invalid_metric",
    "hpa_max_replicas",
    "unschedulable_recently",
    "rejected_recently",
)


@pytest.mark.parametrize("code", HPA_CODES + WVA_CODES + BOUND_BY)
def test_reason_code_has_text(code: str) -> None:
    # Every code that `wva`, `hpa` and the cycle emit has a plain-language text.
    assert reason_text(code) != ""


# A real cycle under each policy, shown on the pages.


def run_cycle(kube: FakeKube, source: FakeMetrics, at: dt.datetime) -> ControlCycle:
    actuator = Actuator(apps=kube, core=kube, autoscaling=kube, dry_run=False)
    kube.clock = at
    source.at = at
    cycle = CycleService(metrics_source=source, actuator=actuator, clock=lambda: at)
    result = cycle.run()
    assert result is not None
    return result


@pytest.fixture
def cluster(world: World) -> FakeKube:
    """Alpha on 3 replicas with an HPA on waiting requests, bravo on 2."""
    Variant.objects.filter(pk=world.alpha.pk).update(
        hpa_metrics=[{"metric": "num_requests_waiting", "target_average_value": 4}]
    )
    kube = FakeKube()
    kube.add("alpha-h100", 3, [FakePod(f"alpha-{i}") for i in (1, 2, 3)])
    kube.add("bravo-l40s", 2, [FakePod(f"bravo-{i}") for i in (1, 2)])
    return kube


def busy() -> FakeMetrics:
    """Alpha's replicas at 90% KV usage with 8 waiting; bravo's idle."""
    pods = {f"alpha-{i}": exposition(kv=0.9, waiting=8, running=4) for i in (1, 2, 3)}
    for i in (1, 2):
        pods[f"bravo-{i}"] = exposition(kv=0.2, waiting=0, running=1)
    return FakeMetrics(pods)


def test_hpa_cycle_explained_on_page(world: World, cluster: FakeKube) -> None:
    # Given alpha's model under `hpa`, 8 waiting requests per replica.
    InferenceModel.objects.filter(pk=world.alpha.model_id).update(policy=Policy.HPA)
    # When a cycle runs and the cycle page is opened.
    cycle = run_cycle(cluster, busy(), world.now + dt.timedelta(minutes=1))
    body = page(world, f"/cycles/{cycle.pk}/")
    block = explanation_block(body)
    # Then the explanation names the policy and the HPA metric's numbers.
    assert 'data-policy="hpa"' in block
    assert '<tr data-metric="num_requests_waiting">' in block
    assert '<td class="num">8</td>' in block
    assert "(scale up: an HPA metric is above its target)" in block
    # And the one-minute peaks of every pod.
    assert '<dd class="explain-peak-kv">90.0%</dd>' in block
    assert '<tr data-pod="alpha-3">' in block


def test_wva_cycle_explained_on_page(world: World, cluster: FakeKube) -> None:
    # Given alpha's model under `wva` without demand data.
    InferenceModel.objects.filter(pk=world.alpha.model_id).update(policy=Policy.WVA)
    # When a cycle runs and the variant page is opened.
    cycle = run_cycle(cluster, busy(), world.now + dt.timedelta(minutes=1))
    body = page(world, f"/variants/{world.alpha.pk}/")
    block = explanation_block(body)
    # Then the page states that no solver ran and the saturation rules decided.
    assert cycle.decisions.get(variant=world.alpha).analysis["policy"] == "wva"
    assert "none: no model was sized, saturation rules decided" in block
    assert "(not enough data to decide)" in block
    assert (
        '<td>model: wva path (slo or saturation)</td><td class="num">saturation</td>'
        in (block)
    )
    # And the HPA counterfactual: ceil(3 * 8 / 4) = 6.
    assert '<dd class="explain-hpa">6:' in block


def test_wva_v1_cycle_explained_in_api(world: World, cluster: FakeKube) -> None:
    # Given alpha's model under `wva-v1`.
    InferenceModel.objects.filter(pk=world.alpha.model_id).update(policy=Policy.WVA_V1)
    # When a cycle runs.
    cycle = run_cycle(cluster, busy(), world.now + dt.timedelta(minutes=1))
    decision = cycle.decisions.get(variant=world.alpha)
    data = api_explanation(world, decision)
    # Then the API names the policy, no solver, and the saturation inputs.
    assert data["policy"] == "wva-v1"
    assert data["solver"] is None
    keys = {item["key"] for item in data["inputs"]}
    assert {"spare_kv", "spare_queue", "saturated"} <= keys
    assert data["peaks"]["num_requests_waiting"] == 8.0
