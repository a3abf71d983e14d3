"""Input limits of the catalogue: bounds, finiteness, booleans, JSON and text.

Each rejected value answers 400 with a message that names the field, and a
stored value that is out of range never makes a response fail.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from tests.actions.conftest import World
from wva_web.catalog.forms import VariantForm
from wva_web.catalog.models import Accelerator, Variant
from wva_web.control import actions


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def accelerator_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": "L4",
        "memory_gb": 24,
        "usd_per_gpu_hour": 0.8,
        "power_idle_w": 20,
        "power_mid_w": 50,
        "power_full_w": 72,
    }
    payload.update(changes)
    return payload


def variant_payload(world: World, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": "llama-h100-new",
        "model": world.variant_a.model_id,
        "accelerator": "H100-80GB",
        "min_replicas": 1,
        "max_replicas": 4,
        "namespace": "llm",
        "workload_name": "llama-h100-new",
    }
    payload.update(changes)
    return payload


def post_raw(user: User, path: str, body: str) -> Any:
    """POST a JSON text as it is, for numbers that json.dumps would not write."""
    return client_for(user).post(path, body, content_type="application/json")


# Upper bounds, each message naming its field.


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("usd_per_gpu_hour", 1e308, "usd_per_gpu_hour must be at most 1,000 USD"),
        ("usd_per_gpu_hour", 1000.5, "usd_per_gpu_hour must be at most 1,000 USD"),
        ("memory_gb", 4097, "memory_gb must be at most 4,096 GB"),
        ("power_full_w", 5001, "power_full_w must be at most 5,000 W"),
        ("gpus_available", 1_000_001, "gpus_available must be at most 1,000,000"),
    ],
)
def test_accelerator_bound_400(
    world: World, field: str, value: float, text: str
) -> None:
    response = client_for(world.u1).post(
        "/api/v1/accelerators/", accelerator_payload(**{field: value}), format="json"
    )
    assert response.status_code == 400
    assert response.json()[field] == [text]


def test_accelerator_at_bound_201(world: World) -> None:
    payload = accelerator_payload(usd_per_gpu_hour=1000, power_full_w=5000)
    response = client_for(world.u1).post(
        "/api/v1/accelerators/", payload, format="json"
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gpus_per_replica", 65),
        ("max_replicas", 10_001),
        ("max_model_len", 10_000_001),
        ("max_num_batched_tokens", 10_000_001),
        ("max_num_seqs", 100_001),
    ],
)
def test_variant_bound_400(world: World, field: str, value: int) -> None:
    response = client_for(world.u1).post(
        "/api/v1/variants/", variant_payload(world, **{field: value}), format="json"
    )
    assert response.status_code == 400
    assert response.json()[field][0].startswith(f"{field} must be at most")


@pytest.mark.parametrize("field", ["ttft_ms", "itl_ms"])
def test_service_class_latency_bound_400(world: World, field: str) -> None:
    payload = {"name": "batch", "ttft_ms": 500, "itl_ms": 50, field: 3_600_001}
    response = client_for(world.u1).post(
        "/api/v1/service-classes/", payload, format="json"
    )
    assert response.status_code == 400
    assert response.json()[field] == [f"{field} must be at most 3,600,000 ms"]


def test_huge_integer_400_not_500(world: World) -> None:
    body = json.dumps(variant_payload(world)).replace(
        '"max_replicas": 4', '"max_replicas": ' + "9" * 400
    )
    response = post_raw(world.u1, "/api/v1/variants/", body)
    assert response.status_code == 400
    assert "max_replicas" in response.json()


def test_float_overflow_literal_400(world: World) -> None:
    body = json.dumps(accelerator_payload()).replace("0.8", "1e400")
    response = post_raw(world.u1, "/api/v1/accelerators/", body)
    assert response.status_code == 400
    assert response.json()["usd_per_gpu_hour"] == [
        "usd_per_gpu_hour must be a finite number"
    ]


def test_manual_action_replicas_bound_400(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/scale-actions/",
        {"variant": world.variant_a.pk, "to_replicas": 10_001},
        format="json",
    )
    assert response.status_code == 400
    assert "to_replicas" in response.json()


# Stored values out of range are shown as null with a warning, never a 500.


def test_overflowing_cost_listed_as_null(world: World) -> None:
    Accelerator.objects.filter(pk=world.variant_a.accelerator_id).update(
        usd_per_gpu_hour=1e308
    )
    Variant.objects.filter(pk=world.variant_a.pk).update(gpus_per_replica=2)
    response = client_for(world.u1).get("/api/v1/variants/")
    rows = {row["name"]: row for row in response.json()["results"]}
    assert response.status_code == 200
    assert rows["llama-h100-a"]["usd_per_replica_hour"] is None
    assert "not a finite number" in rows["llama-h100-a"]["warnings"][-1]


def test_overflowing_cost_action_listed_as_null(world: World) -> None:
    actions.propose_action(world.variant_a.pk, 2, 3)
    Accelerator.objects.filter(pk=world.variant_a.accelerator_id).update(
        usd_per_gpu_hour=1e308
    )
    Variant.objects.filter(pk=world.variant_a.pk).update(gpus_per_replica=2)
    response = client_for(world.u2).get("/api/v1/scale-actions/")
    assert response.status_code == 200
    assert response.json()["results"][0]["usd_per_hour_change"] is None


def test_stored_infinite_price_listed_as_null(world: World) -> None:
    Accelerator.objects.filter(pk=world.variant_a.accelerator_id).update(
        usd_per_gpu_hour=float("inf")
    )
    response = client_for(world.u1).get("/api/v1/accelerators/")
    assert response.status_code == 200
    assert response.json()["results"][0]["usd_per_gpu_hour"] is None


def test_normal_cost_listed_as_number(world: World) -> None:
    response = client_for(world.u1).get(f"/api/v1/variants/{world.variant_a.pk}/")
    assert response.json()["usd_per_replica_hour"] == pytest.approx(12.29)


# hpa_metrics and profile share one validator in the API and the admin.


def test_hpa_target_huge_integer_400(world: World) -> None:
    metrics = [{"metric": "num_requests_waiting", "target_average_value": 10**400}]
    response = post_raw(
        world.u1,
        "/api/v1/variants/",
        json.dumps(variant_payload(world, hpa_metrics=metrics)),
    )
    assert response.status_code == 400
    message = response.json()["hpa_metrics"][0]
    assert "target_average_value must be at most 1,000,000" in message


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (True, "must be a number, got True"),
        ("4", "must be a number, got '4'"),
        (0, "must be above 0"),
        (-1, "must be at least 0"),
        (2_000_000, "must be at most 1,000,000"),
    ],
)
def test_hpa_target_invalid_400(world: World, target: Any, text: str) -> None:
    metrics = [{"metric": "num_requests_waiting", "target_average_value": target}]
    response = client_for(world.u1).post(
        "/api/v1/variants/", variant_payload(world, hpa_metrics=metrics), format="json"
    )
    assert response.status_code == 400
    assert text in response.json()["hpa_metrics"][0]


def test_profile_unknown_key_named_400(world: World) -> None:
    profile = {"alpha": 6, "beta": 0.1, "gamma": 20, "delta": 0.01, "alhpa": 1}
    response = client_for(world.u1).post(
        "/api/v1/variants/", variant_payload(world, profile=profile), format="json"
    )
    assert response.status_code == 400
    assert "unknown key 'alhpa'" in response.json()["profile"][0]


def test_profile_valid_201(world: World) -> None:
    profile = {"alpha": 6, "beta": 0.1, "gamma": 20, "delta": 0.01, "kv_tokens": 1e6}
    response = client_for(world.u1).post(
        "/api/v1/variants/", variant_payload(world, profile=profile), format="json"
    )
    assert response.status_code == 201
    assert response.json()["profile"] == profile


def test_profile_partial_latency_fit_400(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/variants/",
        variant_payload(world, profile={"alpha": 6}),
        format="json",
    )
    assert response.status_code == 400
    assert "beta is required when alpha is set" in response.json()["profile"][0]


def admin_variant_data(world: World, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "llama-h100-new",
        "model": world.variant_a.model_id,
        "accelerator": world.variant_a.accelerator_id,
        "gpus_per_replica": 1,
        "max_num_seqs": 256,
        "max_model_len": 8192,
        "profile": "{}",
        "min_replicas": 1,
        "max_replicas": 4,
        "mode": "approval",
        "namespace": "llm",
        "kind": "Deployment",
        "workload_name": "llama-h100-new",
        "hpa_metrics": "[]",
    }
    data.update(changes)
    return data


def test_admin_profile_nan_rejected(world: World) -> None:
    form = VariantForm(data=admin_variant_data(world, profile='{"alpha": NaN}'))
    assert not form.is_valid()
    assert "alpha must be a finite number" in form.errors["profile"][0]


def test_admin_profile_nan_not_saved(world: World) -> None:
    form = VariantForm(data=admin_variant_data(world, profile='{"alpha": NaN}'))
    form.is_valid()
    assert not Variant.objects.filter(name="llama-h100-new").exists()


def test_admin_hpa_target_huge_rejected(world: World) -> None:
    metrics = '[{"metric": "kv_cache_usage", "target_average_value": 1' + "0" * 400
    form = VariantForm(data=admin_variant_data(world, hpa_metrics=metrics + "}]"))
    assert not form.is_valid()
    assert "target_average_value must be at most" in form.errors["hpa_metrics"][0]


def test_admin_profile_unknown_key_rejected(world: World) -> None:
    form = VariantForm(data=admin_variant_data(world, profile='{"speed": 1}'))
    assert not form.is_valid()
    assert "unknown key 'speed'" in form.errors["profile"][0]


# JSON true and false are not numbers.


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("accelerators", "usd_per_gpu_hour"),
        ("accelerators", "memory_gb"),
        ("accelerators", "gpus_available"),
    ],
)
def test_accelerator_boolean_number_400(world: World, path: str, field: str) -> None:
    response = client_for(world.u1).post(
        f"/api/v1/{path}/", accelerator_payload(**{field: True}), format="json"
    )
    assert response.status_code == 400
    assert response.json()[field][0].startswith(f"{field} must be a")
    assert "not true" in response.json()[field][0]


@pytest.mark.parametrize(
    "field", ["kv_cache_threshold", "queue_length_threshold", "queue_spare_trigger"]
)
def test_model_boolean_threshold_400(world: World, field: str) -> None:
    model_id = world.variant_a.model_id
    response = client_for(world.u1).patch(
        f"/api/v1/models/{model_id}/", {field: True}, format="json"
    )
    assert response.status_code == 400
    assert response.json()[field] == [f"{field} must be a number, not true"]


@pytest.mark.parametrize("field", ["min_replicas", "max_replicas", "max_num_seqs"])
def test_variant_boolean_integer_400(world: World, field: str) -> None:
    response = client_for(world.u1).patch(
        f"/api/v1/variants/{world.variant_a.pk}/", {field: True}, format="json"
    )
    assert response.status_code == 400
    assert response.json()[field] == [f"{field} must be a whole number, not true"]


def test_override_boolean_duration_400(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    response = client_for(world.u2).post(
        f"/api/v1/scale-actions/{proposal.pk}/override/",
        {"replicas": 3, "duration_s": True},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["duration_s"] == ["duration_s must be a number, not true"]


# Text bound for labels: no control, format or separator characters.


@pytest.mark.parametrize(
    "character", ["\u0085", "\u202e", "\u200b", "\u2028", "\u2029", "\ufeff", "\x07"]
)
def test_variant_name_invisible_character_400(world: World, character: str) -> None:
    response = client_for(world.u1).post(
        "/api/v1/variants/",
        variant_payload(world, name=f"llama{character}h100"),
        format="json",
    )
    message = response.json()["name"][0]
    assert response.status_code == 400
    assert message.startswith("name must not contain control characters")
    assert f"U+{ord(character):04X}" in message


@pytest.mark.parametrize("field", ["name", "vendor", "node_label_value"])
def test_accelerator_label_bidi_override_400(world: World, field: str) -> None:
    response = client_for(world.u1).post(
        "/api/v1/accelerators/",
        accelerator_payload(**{field: "H100\u202e08"}),
        format="json",
    )
    assert response.status_code == 400
    assert response.json()[field][0].startswith(f"{field} must not contain")


def test_model_name_zero_width_400(world: World) -> None:
    response = client_for(world.u1).patch(
        f"/api/v1/models/{world.variant_a.model_id}/",
        {"name": "llama\u200b-8b"},
        format="json",
    )
    assert response.status_code == 400
    assert "U+200B" in response.json()["name"][0]


def test_label_with_accent_and_space_201(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/accelerators/",
        accelerator_payload(name="Gaudi 3 (Köln)"),
        format="json",
    )
    assert response.status_code == 201


def test_accelerator_source_too_long_400(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/accelerators/", accelerator_payload(source="x" * 2001), format="json"
    )
    assert response.status_code == 400
    assert response.json()["source"] == ["source must be at most 2000 characters"]


def test_namespace_trailing_newline_rejected(world: World) -> None:
    variant = Variant.objects.get(pk=world.variant_a.pk)
    variant.namespace = "llm\n"
    with pytest.raises(ValidationError) as caught:
        variant.full_clean()
    assert "namespace" in caught.value.message_dict


@pytest.mark.parametrize("path", ["/api/v1/variants/", "/api/v1/comparisons/"])
def test_deeply_nested_body_400_not_500(world: World, path: str) -> None:
    response = post_raw(world.u1, path, "[" * 100_000)
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
