"""Degraded, limited and unknown values read as such on the variant pages."""

from __future__ import annotations

import datetime as dt
import json

from tests.dashboard.conftest import World, make_cycle, make_sample
from wva_web.control.models import CycleStatus, Decision, SampleStatus, VariantState

SINCE_1203 = "2025-05-01T12:03:00+00:00"


def degrade_alpha(world: World) -> None:
    """One of alpha's 4 replicas has had no metrics since 12:03."""
    cycle = make_cycle(world.now - dt.timedelta(seconds=20))
    for i, kv in enumerate((0.40, 0.45, 0.50), 1):
        make_sample(cycle, world.alpha, f"alpha-h100-pod-{i}", kv, 1.0)
    make_sample(
        cycle, world.alpha, "alpha-h100-pod-4", None, None, SampleStatus.MISSING
    )
    VariantState.objects.filter(variant=world.alpha).update(
        last_cycle=cycle,
        degraded=True,
        conditions=[
            {
                "type": "MetricsAvailable",
                "status": "False",
                "reason": "missing",
                "message": "1 of 4 ready replicas without valid metrics",
                "since": SINCE_1203,
            },
        ],
    )


def test_degraded_variant_reads_degraded_on_list(world: World) -> None:
    degrade_alpha(world)
    body = world.client("viewer_a").get("/variants/").content.decode()
    assert "Degraded: 1 of 4 replicas without metrics since 12:03" in body


def test_degraded_variant_reads_degraded_on_detail(world: World) -> None:
    degrade_alpha(world)
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    assert "Degraded: 1 of 4 replicas without metrics since 12:03" in body
    assert 'data-pod="alpha-h100-pod-4" data-status="missing"' in body


def test_degraded_variant_flagged_in_live_json(world: World) -> None:
    degrade_alpha(world)
    data = json.loads(world.client("viewer_a").get("/live.json").content)
    alpha = next(v for v in data["variants"] if v["name"] == "alpha-h100")
    assert alpha["degraded"] is True
    assert alpha["status"][0]["reason"] == "missing"


def test_healthy_variant_reads_healthy(world: World) -> None:
    body = world.client("viewer_a").get("/variants/").content.decode()
    assert "Healthy" in body
    assert "Degraded" not in body


def test_null_hpa_shows_unknown_not_zero(world: World) -> None:
    # given bravo's HPA counterfactual is unknown (null)
    body = world.client("viewer_b").get("/variants/").content.decode()
    # then
    assert f'<td id="hpa-{world.bravo.pk}" class="num">unknown</td>' in body


def test_null_hpa_unknown_in_live_json(world: World) -> None:
    data = json.loads(world.client("viewer_b").get("/live.json").content)
    assert data["variants"][0]["hpa_target_replicas"] is None


def test_missing_state_shows_unknown_replicas(world: World) -> None:
    VariantState.objects.filter(variant=world.alpha).delete()
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    assert f'<dd id="replicas-{world.alpha.pk}">unknown</dd>' in body
    assert f'<dd id="hpa-{world.alpha.pk}">unknown</dd>' in body


def test_null_hpa_unknown_on_cycle_page(world: World) -> None:
    body = world.client("viewer_b").get(f"/cycles/{world.cycle.pk}/").content.decode()
    assert '<td class="num hpa">unknown</td>' in body


def test_capped_by_max_reads_limited(world: World) -> None:
    # given the latest decision capped at the max of 4
    cycle = make_cycle(world.now - dt.timedelta(seconds=10))
    Decision.objects.create(
        cycle=cycle,
        variant=world.alpha,
        current_replicas=4,
        ready_replicas=4,
        target_replicas=4,
        bound_by="max_replicas",
        reasons=["capped_by_max"],
        message="wants 5, capped at 4 (max)",
    )
    VariantState.objects.filter(variant=world.alpha).update(
        last_cycle=cycle,
        conditions=[
            {
                "type": "ScalingLimited",
                "status": "True",
                "reason": "capped_by_max",
                "message": "wants 5, capped at 4 (max)",
                "since": SINCE_1203,
            }
        ],
    )
    # when
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    # then
    assert "Limited: wants 5, capped at 4 (max), since 12:03" in body
    assert '<li class="status-line warning" data-reason="capped_by_max">' in body


def test_gpu_budget_cap_names_free_gpus(world: World) -> None:
    # given the target capped at 5 because 1 of 8 H100-80GB GPUs is free
    cycle = make_cycle(world.now - dt.timedelta(seconds=10))
    Decision.objects.create(
        cycle=cycle,
        variant=world.alpha,
        current_replicas=4,
        ready_replicas=4,
        target_replicas=5,
        bound_by="gpu_budget",
        analysis={"wanted_replicas": 6, "free_gpus": 1},
    )
    # when
    body = world.client("viewer_a").get("/variants/").content.decode()
    # then
    assert "Limited: wants 6, capped at 5 by free H100-80GB GPUs (1 of 8)" in body


def test_kv_missing_counter_shown(world: World) -> None:
    VariantState.objects.filter(variant=world.alpha).update(missing_kv_cycles=3)
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    assert "KV-cache usage missing for 3 cycles" in body


def test_able_to_scale_false_is_shown(world: World) -> None:
    VariantState.objects.filter(variant=world.alpha).update(
        conditions=[
            {
                "type": "AbleToScale",
                "status": "False",
                "reason": "hpa_conflict",
                "message": "HPA alpha-hpa targets this workload",
                "since": SINCE_1203,
            }
        ],
    )
    body = world.client("viewer_a").get("/variants/").content.decode()
    assert "Not able to scale: HPA alpha-hpa targets this workload, since 12:03" in body


def test_short_grace_period_warns(world: World) -> None:
    VariantState.objects.filter(variant=world.alpha).update(
        conditions=[
            {
                "type": "SafeToScaleDown",
                "status": "False",
                "reason": "short_grace_period",
                "grace_period_s": 30,
                "message": "",
                "since": SINCE_1203,
            }
        ],
    )
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    assert (
        "the 30 s grace period is shorter than the longest expected generation" in body
    )
    assert "at least 300 s with a pre-stop hook" in body


def test_victim_pod_shown(world: World) -> None:
    # given a reduction that removes alpha-h100-pod-2
    cycle = make_cycle(world.now - dt.timedelta(seconds=10))
    Decision.objects.create(
        cycle=cycle,
        variant=world.alpha,
        current_replicas=4,
        ready_replicas=4,
        target_replicas=3,
        victim_pod="alpha-h100-pod-2",
        reasons=["scale_down"],
    )
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    assert "Replica to remove: <code>alpha-h100-pod-2</code>" in body


def test_latest_decision_reasons_shown(world: World) -> None:
    body = world.client("viewer_a").get(f"/variants/{world.alpha.pk}/").content.decode()
    assert "<code>hold:within_triggers</code>" in body


def fail_cycles(
    world: World, count: int, status: str = CycleStatus.METRICS_UNAVAILABLE
) -> None:
    for i in range(count):
        make_cycle(
            world.now + dt.timedelta(seconds=30 * (i + 1)),
            status=status,
            errors=[{"phase": "collect", "kind": "http_503", "message": "HTTP 503"}],
        )


def test_two_failing_cycles_raise_no_banner(world: World) -> None:
    fail_cycles(world, 2)
    body = world.client("viewer_a").get("/").content.decode()
    assert 'id="cycle-alert"' not in body


def test_third_failing_cycle_raises_banner(world: World) -> None:
    fail_cycles(world, 3)
    body = world.client("viewer_a").get("/variants/").content.decode()
    assert 'id="cycle-alert"' in body
    assert "the last 3 control cycles failed" in body
    assert "kind: http_503" in body


def test_failed_and_unavailable_cycles_count_together(world: World) -> None:
    fail_cycles(world, 2)
    make_cycle(world.now + dt.timedelta(minutes=5), status=CycleStatus.FAILED)
    body = world.client("viewer_a").get("/cycles/").content.decode()
    assert 'id="cycle-alert"' in body


def test_good_cycle_ends_banner(world: World) -> None:
    fail_cycles(world, 3)
    make_cycle(world.now + dt.timedelta(minutes=5), status=CycleStatus.PARTIAL)
    body = world.client("viewer_a").get("/").content.decode()
    assert 'id="cycle-alert"' not in body


def test_running_cycle_does_not_hide_banner(world: World) -> None:
    fail_cycles(world, 3)
    make_cycle(world.now + dt.timedelta(minutes=5), status=CycleStatus.RUNNING)
    data = json.loads(world.client("viewer_a").get("/live.json").content)
    assert data["alert"]["cycles"] == 3
