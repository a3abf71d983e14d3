"""Catalogue validation through the API and the admin forms."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from tests.actions.builders import make_accelerator, make_service_class
from tests.actions.conftest import World
from wva_web.catalog import forms
from wva_web.catalog.forms import InferenceModelForm, VariantForm
from wva_web.catalog.models import InferenceModel, Membership, Variant


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def model_payload(world: World, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": "qwen-32b",
        "team": world.team_a.pk,
        "service_class": make_service_class().pk,
    }
    payload.update(changes)
    return payload


def variant_payload(world: World, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": "llama-l40s-a",
        "model": world.variant_a.model_id,
        "accelerator": "H100-80GB",
        "min_replicas": 1,
        "max_replicas": 4,
        "namespace": "llm",
        "workload_name": "llama-l40s-a",
    }
    payload.update(changes)
    return payload


def post_model(world: World, **changes: Any) -> Any:
    return client_for(world.u1).post(
        "/api/v1/models/", model_payload(world, **changes), format="json"
    )


def post_variant(world: World, **changes: Any) -> Any:
    return client_for(world.u1).post(
        "/api/v1/variants/", variant_payload(world, **changes), format="json"
    )


def post_variant_as_approver(world: World, **changes: Any) -> Any:
    return client_for(world.u2).post(
        "/api/v1/variants/", variant_payload(world, **changes), format="json"
    )


# Saturation thresholds of a model.


def test_kv_threshold_in_percent_400_with_hint(world: World) -> None:
    response = post_model(world, kv_cache_threshold=80)
    assert response.status_code == 400
    message = response.json()["kv_cache_threshold"][0]
    assert "must be greater than 0 and at most 1" in message
    assert "Use 0.8 for 80%" in message


def test_kv_threshold_zero_400(world: World) -> None:
    response = post_model(world, kv_cache_threshold=0)
    assert response.status_code == 400
    assert "kv_cache_threshold" in response.json()


def test_kv_spare_trigger_above_threshold_400(world: World) -> None:
    response = post_model(world, kv_spare_trigger=0.9, kv_cache_threshold=0.8)
    assert response.status_code == 400
    assert (
        "must be below kv_cache_threshold (0.8)"
        in response.json()["kv_spare_trigger"][0]
    )


def test_queue_spare_trigger_above_threshold_400(world: World) -> None:
    response = post_model(world, queue_spare_trigger=6, queue_length_threshold=5)
    assert response.status_code == 400
    message = response.json()["queue_spare_trigger"][0]
    assert "must be below queue_length_threshold (5)" in message


def test_queue_threshold_zero_400(world: World) -> None:
    response = post_model(world, queue_length_threshold=0)
    assert response.status_code == 400
    assert "must be at least 1" in response.json()["queue_length_threshold"][0]


def test_thresholds_omitted_store_defaults(world: World) -> None:
    response = post_model(world)
    assert response.status_code == 201
    stored = InferenceModel.objects.get(pk=response.json()["id"])
    assert stored.kv_cache_threshold == 0.80
    assert stored.queue_length_threshold == 5
    assert stored.kv_spare_trigger == 0.10
    assert stored.queue_spare_trigger == 3
    assert response.json()["kv_cache_threshold"] == 0.80


def test_patch_spare_trigger_checked_against_stored_threshold(world: World) -> None:
    model = world.variant_a.model
    response = client_for(world.u1).patch(
        f"/api/v1/models/{model.pk}/", {"kv_spare_trigger": 0.85}, format="json"
    )
    assert response.status_code == 400
    assert "kv_cache_threshold (0.8)" in response.json()["kv_spare_trigger"][0]


def test_model_in_other_team_400(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/models/", model_payload(world, team=world.team_b.pk), format="json"
    )
    assert response.status_code == 400
    assert "not found" in response.json()["team"][0]


def test_model_in_team_where_viewer_403(world: World) -> None:
    # given u1, operator in team-a and viewer in team-b
    Membership.objects.create(team=world.team_b, user=world.u1, role="viewer")
    response = client_for(world.u1).post(
        "/api/v1/models/", model_payload(world, team=world.team_b.pk), format="json"
    )
    assert response.status_code == 403
    assert not InferenceModel.objects.filter(name="qwen-32b").exists()


# Variants.


def test_min_above_max_400_names_both(world: World) -> None:
    response = post_variant(world, min_replicas=3, max_replicas=2)
    body = response.json()
    assert response.status_code == 400
    assert body["min_replicas"] == [
        "min_replicas (3) must not be above max_replicas (2)"
    ]
    assert body["max_replicas"] == [
        "max_replicas (2) must not be below min_replicas (3)"
    ]


def test_max_zero_400_hints_advisory(world: World) -> None:
    response = post_variant(world, min_replicas=0, max_replicas=0)
    assert response.status_code == 400
    assert "set mode to advisory" in response.json()["max_replicas"][0]


def test_unknown_accelerator_name_400(world: World) -> None:
    response = post_variant(world, accelerator="B200")
    assert response.status_code == 400
    assert "accelerator 'B200' not found" in response.json()["accelerator"][0]


def test_unknown_accelerator_id_400(world: World) -> None:
    response = post_variant(world, accelerator=9999)
    assert response.status_code == 400
    assert "not found" in response.json()["accelerator"][0]


def test_accelerator_by_id_201(world: World) -> None:
    response = post_variant(world, accelerator=make_accelerator().pk)
    assert response.status_code == 201
    assert response.json()["accelerator_name"] == "H100-80GB"


def test_variant_name_with_newline_400(world: World) -> None:
    response = post_variant(world, name="llama\nh100")
    assert response.status_code == 400
    assert "control characters" in response.json()["name"][0]


def test_workload_name_not_rfc1123_400(world: World) -> None:
    response = post_variant(world, workload_name='llama"a')
    assert response.status_code == 400
    assert "RFC 1123" in response.json()["workload_name"][0]


def test_duplicate_workload_400_names_variant(world: World) -> None:
    response = post_variant(world, workload_name=world.variant_a.workload_name)
    assert response.status_code == 400
    message = response.json()["workload_name"][0]
    assert "already scaled by variant llama-h100-a" in message


def test_duplicate_workload_of_other_team_hides_name(world: World) -> None:
    response = post_variant(world, workload_name=world.variant_b.workload_name)
    assert response.status_code == 400
    message = response.json()["workload_name"][0]
    assert "a variant of another team" in message
    assert "variant llama-l4-b" not in message


def test_duplicate_workload_other_kind_201(world: World) -> None:
    response = post_variant(
        world, workload_name=world.variant_a.workload_name, kind="StatefulSet"
    )
    assert response.status_code == 201


def test_variant_on_other_team_model_400(world: World) -> None:
    response = client_for(world.u3).post(
        "/api/v1/variants/", variant_payload(world), format="json"
    )
    assert response.status_code == 400
    assert "not found" in response.json()["model"][0]


def test_running_target_above_max_seqs_warns(world: World) -> None:
    metrics = [{"metric": "num_requests_running", "target_average_value": 6}]
    response = post_variant(world, max_num_seqs=4, hpa_metrics=metrics)
    assert response.status_code == 201
    warnings = response.json()["warnings"]
    assert len(warnings) == 1
    assert "can never be reached" in warnings[0]


def test_hpa_metric_unknown_400(world: World) -> None:
    metrics = [{"metric": "gpu_temperature", "target_average_value": 60}]
    response = post_variant(world, hpa_metrics=metrics)
    assert response.status_code == 400
    assert "unknown metric 'gpu_temperature'" in response.json()["hpa_metrics"][0]


def test_hpa_kv_target_in_percent_400(world: World) -> None:
    metrics = [{"metric": "kv_cache_usage", "target_average_value": 60}]
    response = post_variant(world, hpa_metrics=metrics)
    assert response.status_code == 400
    assert "Use 0.6 for 60%" in response.json()["hpa_metrics"][0]


def test_auto_with_hpa_on_workload_400(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forms, "find_conflicting_hpa", lambda variant: "llama-hpa")
    response = post_variant_as_approver(world, mode="auto")
    assert response.status_code == 400
    message = response.json()["mode"][0]
    assert "HorizontalPodAutoscaler llama-hpa" in message
    assert "wva_desired_replicas" in message
    assert not Variant.objects.filter(name="llama-l40s-a").exists()


def test_auto_patch_with_hpa_on_workload_400(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forms, "find_conflicting_hpa", lambda variant: "llama-hpa")
    response = client_for(world.u2).patch(
        f"/api/v1/variants/{world.variant_a.pk}/", {"mode": "auto"}, format="json"
    )
    assert response.status_code == 400
    world.variant_a.refresh_from_db()
    assert world.variant_a.mode == Variant.Mode.APPROVAL


def test_auto_without_hpa_201(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(
        forms,
        "find_conflicting_hpa",
        lambda variant: asked.append(variant.workload_name),
    )
    response = post_variant_as_approver(world, mode="auto")
    assert response.status_code == 201
    assert asked == ["llama-l40s-a"]


def test_variant_embeds_state_and_conditions(world: World) -> None:
    state = world.variant_a.state
    state.conditions = [
        {
            "type": "ScalingLimited",
            "status": "True",
            "reason": "capped_by_max",
            "message": "wants 5, capped at 4 (max)",
            "since": "2026-12-04T12:01:00Z",
        },
        {"type": "MetricsAvailable", "status": "True", "reason": "ok"},
    ]
    state.save(update_fields=["conditions"])
    body = (
        client_for(world.viewer_a).get(f"/api/v1/variants/{world.variant_a.pk}/").json()
    )
    conditions = body["state"]["conditions"]
    assert body["state"]["current_replicas"] == 2
    assert conditions[0]["reason"] == "capped_by_max"
    assert conditions[0]["since"] == "2026-12-04T12:01:00Z"
    assert conditions[1]["since"] is None


# Accelerators and service classes.


def test_negative_cost_400(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/accelerators/",
        {
            "name": "L4",
            "memory_gb": 24,
            "usd_per_gpu_hour": -0.8,
            "power_idle_w": 20,
            "power_mid_w": 50,
            "power_full_w": 72,
        },
        format="json",
    )
    assert response.status_code == 400
    assert "usd_per_gpu_hour" in response.json()


def test_power_curve_falling_400(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/accelerators/",
        {
            "name": "L4",
            "memory_gb": 24,
            "usd_per_gpu_hour": 0.8,
            "power_idle_w": 20,
            "power_mid_w": 90,
            "power_full_w": 72,
        },
        format="json",
    )
    assert response.status_code == 400
    assert "power must rise" in response.json()["power_mid_w"][0]


def test_service_class_name_with_control_char_400(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/service-classes/",
        {"name": "batch\x07", "ttft_ms": 2000, "itl_ms": 100},
        format="json",
    )
    assert response.status_code == 400
    assert "control characters" in response.json()["name"][0]


# The admin forms give the same messages.


def admin_model_data(world: World, **changes: Any) -> dict[str, Any]:
    data = {
        "name": "qwen-32b",
        "team": world.team_a.pk,
        "service_class": make_service_class().pk,
        "policy": "",
        "kv_cache_threshold": 0.8,
        "queue_length_threshold": 5,
        "kv_spare_trigger": 0.1,
        "queue_spare_trigger": 3,
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"kv_cache_threshold": 80}, "kv_cache_threshold", "Use 0.8 for 80%"),
        (
            {"kv_spare_trigger": 0.9},
            "kv_spare_trigger",
            "below kv_cache_threshold (0.8)",
        ),
        (
            {"queue_spare_trigger": 6},
            "queue_spare_trigger",
            "below queue_length_threshold",
        ),
        ({"queue_length_threshold": 0}, "queue_length_threshold", "at least 1"),
    ],
)
def test_admin_model_form_same_message(
    world: World, changes: dict[str, Any], field: str, text: str
) -> None:
    form = InferenceModelForm(data=admin_model_data(world, **changes))
    assert not form.is_valid()
    assert len(form.errors[field]) == 1
    assert text in form.errors[field][0]


def admin_variant_data(world: World, **changes: Any) -> dict[str, Any]:
    data = {
        "name": "llama-l40s-a",
        "model": world.variant_a.model_id,
        "accelerator": make_accelerator().pk,
        "gpus_per_replica": 1,
        "max_num_seqs": 256,
        "max_model_len": 8192,
        "profile": "{}",
        "min_replicas": 1,
        "max_replicas": 4,
        "mode": "approval",
        "namespace": "llm",
        "kind": "Deployment",
        "workload_name": "llama-l40s-a",
        "hpa_metrics": "[]",
    }
    data.update(changes)
    return data


def test_admin_variant_min_above_max_names_both(world: World) -> None:
    form = VariantForm(data=admin_variant_data(world, min_replicas=3, max_replicas=2))
    assert not form.is_valid()
    assert form.errors["min_replicas"] == [
        "min_replicas (3) must not be above max_replicas (2)"
    ]
    assert form.errors["max_replicas"] == [
        "max_replicas (2) must not be below min_replicas (3)"
    ]


def test_admin_variant_max_zero_hints_advisory(world: World) -> None:
    form = VariantForm(data=admin_variant_data(world, min_replicas=0, max_replicas=0))
    assert not form.is_valid()
    assert "set mode to advisory" in form.errors["max_replicas"][0]


def test_admin_variant_duplicate_workload_names_variant(world: World) -> None:
    form = VariantForm(data=admin_variant_data(world, workload_name="llama-h100-a"))
    assert not form.is_valid()
    assert "already scaled by variant llama-h100-a" in form.errors["workload_name"][0]


def test_admin_variant_auto_with_hpa_rejected(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forms, "find_conflicting_hpa", lambda variant: "llama-hpa")
    form = VariantForm(data=admin_variant_data(world, mode="auto"))
    form.user = world.u2
    assert not form.is_valid()
    assert "HorizontalPodAutoscaler llama-hpa" in form.errors["mode"][0]
