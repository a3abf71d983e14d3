"""Control cycle under the `wva` policy: proposals, missing data and the analysis."""

from __future__ import annotations

from typing import Any

import pytest

from optimizer.state import InputError
from tests.control.fakes import NOW, FakeKube, FakeMetrics, FakePod, exposition
from wva_web.catalog.models import InferenceModel, Policy
from wva_web.control import cycle_wva
from wva_web.control.cycle_view import VariantView
from wva_web.control.cycle_wva import replica_json
from wva_web.control.models import ControlCycle, Decision, ScaleAction
from wva_web.integrations import kube as kube_api
from wva_web.integrations import metrics


def decision(cycle: ControlCycle, variant: str) -> Decision:
    return Decision.objects.get(cycle=cycle, variant__name=variant)


@pytest.fixture
def two_variants(make_model: Any, make_variant: Any, kube: FakeKube) -> InferenceModel:
    """Model M with A on L40S at 3 replicas and B on H100-80GB at 2, mode approval."""
    model = make_model()
    make_variant(model, "a", "L40S", max_replicas=8)
    make_variant(model, "b", "H100-80GB", max_replicas=8)
    kube.add("a", 3, [FakePod(f"a{i}") for i in (1, 2, 3)])
    kube.add("b", 2, [FakePod(f"b{i}") for i in (1, 2)])
    return model


def use_wva(model: InferenceModel) -> None:
    InferenceModel.objects.filter(pk=model.pk).update(policy=Policy.WVA)


def idle_metrics(missing: str = "") -> FakeMetrics:
    """Every pod at 10% KV usage with an empty queue; `missing` times out."""
    names = ["a1", "a2", "a3", "b1", "b2"]
    pods = {name: exposition(kv=0.1, waiting=0, running=2) for name in names}
    if missing:
        pods[missing] = "timeout"
    return FakeMetrics(pods)


def test_saturated_wva_proposes_scale_up(
    two_variants: InferenceModel, run_cycle: Any
) -> None:
    # Given every replica at 90% KV usage under `wva`.
    use_wva(two_variants)
    names = ["a1", "a2", "a3", "b1", "b2"]
    source = FakeMetrics({name: exposition(kv=0.9, waiting=1) for name in names})
    # When the cycle runs.
    cycle = run_cycle(source, NOW)
    # Then the cheaper variant A gets a pending proposal from 3 to 4.
    action = ScaleAction.objects.get(variant__name="a")
    assert (action.from_replicas, action.to_replicas) == (3, 4)
    assert action.state == "pending"
    assert "scale_up:spare_kv" in decision(cycle, "a").reasons
    assert decision(cycle, "a").analysis["policy"] == "wva"
    assert not ScaleAction.objects.filter(variant__name="b").exists()


def test_missing_sample_wva_holds(two_variants: InferenceModel, run_cycle: Any) -> None:
    # Given an idle model under `wva` whose ready replica a3 returns no sample.
    use_wva(two_variants)
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(missing="a3"), NOW)
    # Then A keeps 3 replicas and its reason names a3.
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert "missing_metrics:a3" in row.reasons
    assert row.bound_by == "missing_data"
    assert not ScaleAction.objects.filter(variant__name="a").exists()


def test_idle_wva_reduces_most_expensive(
    two_variants: InferenceModel, run_cycle: Any
) -> None:
    # Given the same idle model with every sample present.
    use_wva(two_variants)
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(), NOW)
    # Then B, the more expensive variant, loses one replica and names its victim.
    row = decision(cycle, "b")
    assert row.target_replicas == 1
    assert "scale_down:safe" in row.reasons
    assert row.victim_pod in ("b1", "b2")
    assert decision(cycle, "a").target_replicas == 3


def test_wva_analysis_names_policy(
    two_variants: InferenceModel, run_cycle: Any
) -> None:
    # Given the idle model under `wva`, with no demand for SLO sizing.
    use_wva(two_variants)
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(), NOW)
    # Then the stored analysis names the policy and that no solver ran.
    analysis = decision(cycle, "a").analysis
    assert analysis["policy"] == "wva"
    assert analysis["solver"] is None
    assert analysis["model"]["path"] == "saturation"
    assert "insufficient_data" in decision(cycle, "a").reasons


def test_empty_policy_runs_wva_v1(
    two_variants: InferenceModel, run_cycle: Any, settings: Any
) -> None:
    # Given the idle model with no policy set and WVA_POLICY set to `wva-v1`.
    settings.WVA_POLICY = "wva-v1"
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(), NOW)
    # Then `wva-v1` decides: no `wva` reason codes, and the policy is named.
    row = decision(cycle, "a")
    assert row.analysis["policy"] == "wva-v1"
    assert "solver" not in row.analysis
    assert "insufficient_data" not in row.reasons


def test_default_policy_is_wva(two_variants: InferenceModel, run_cycle: Any) -> None:
    # Given the idle model with no policy set and WVA_POLICY not set.
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(), NOW)
    # Then `wva` decides.
    row = decision(cycle, "a")
    assert row.analysis["policy"] == "wva"
    assert "insufficient_data" in row.reasons


def test_default_policy_setting_selects_wva(
    two_variants: InferenceModel, run_cycle: Any, settings: Any
) -> None:
    # Given no policy on the model and WVA_POLICY set to `wva`.
    settings.WVA_POLICY = "wva"
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(), NOW)
    # Then `wva` decides.
    assert decision(cycle, "a").analysis["policy"] == "wva"


def test_replica_json_invalid_running_is_none(
    two_variants: InferenceModel,
) -> None:
    # Given a ready pod whose scrape parsed KV usage and queue but no running count.
    variant = two_variants.variants.get(name="a")
    pod = kube_api.PodInfo(
        name="a1",
        uid="uid-a1",
        phase="Running",
        ready=True,
        terminating=False,
        pod_ip="127.0.0.1",
        metrics_port=9000,
        metrics_path="/metrics",
        deletion_cost=None,
    )
    body = exposition(kv=0.4, waiting=2, running=None)
    view = VariantView(variant=variant, current=1, pods=[pod])
    view.samples["a1"] = metrics.parse_exposition("a1", body, NOW)
    # When the replica row is built.
    row = replica_json(view, pod, NOW)
    # Then the running count is unknown, never 0, and the others are kept.
    assert row["num_requests_running"] is None
    assert row["kv_cache_usage"] == 0.4
    assert row["num_requests_waiting"] == 2.0


def test_replica_json_failed_scrape_is_none(
    two_variants: InferenceModel,
) -> None:
    # Given a ready pod whose scrape timed out.
    variant = two_variants.variants.get(name="a")
    pod = kube_api.PodInfo(
        name="a2",
        uid="uid-a2",
        phase="Running",
        ready=True,
        terminating=False,
        pod_ip="127.0.0.1",
        metrics_port=9000,
        metrics_path="/metrics",
        deletion_cost=None,
    )
    view = VariantView(variant=variant, current=1, pods=[pod])
    view.samples["a2"] = metrics.failed_sample("a2", NOW, "timeout", "timed out")
    # When the replica row is built.
    row = replica_json(view, pod, NOW)
    # Then every value is unknown.
    assert row["kv_cache_usage"] is None
    assert row["num_requests_waiting"] is None
    assert row["num_requests_running"] is None


def test_invalid_wva_input_holds_model_only(
    two_variants: InferenceModel, run_cycle: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a `wva` model whose optimizer state is rejected as invalid.
    use_wva(two_variants)

    def reject(*args: Any, **kwargs: Any) -> Any:
        raise InputError("variants[0].max_replicas", "must be at least 0")

    monkeypatch.setattr(cycle_wva, "analyse_model_wva", reject)
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(), NOW)
    # Then the cycle finishes and the model holds with the error as its reason.
    assert cycle.status != "failed"
    row = decision(cycle, "a")
    assert row.target_replicas == 3
    assert row.bound_by == "missing_data"
    assert any(reason.startswith("invalid_input:") for reason in row.reasons)
    assert not ScaleAction.objects.exists()


def test_cycle_records_policies_models_ran(
    two_variants: InferenceModel, run_cycle: Any, settings: Any
) -> None:
    # Given the default policy `wva` and a model that selects `hpa`.
    settings.WVA_POLICY = "wva"
    two_variants.policy = "hpa"
    two_variants.save(update_fields=["policy"])
    # When the cycle runs.
    cycle = run_cycle(idle_metrics(), NOW)
    cycle.refresh_from_db()
    # Then the cycle names the policy its model ran, not the default.
    assert cycle.policy == "hpa"
