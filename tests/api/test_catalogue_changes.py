"""Catalogue changes: mode auto needs an approver, every change is audited,
and a variant with approval history cannot be deleted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.actions.conftest import World
from wva_web.catalog.deletion import VariantHistoryProtected
from wva_web.catalog.forms import VariantForm
from wva_web.catalog.models import Accelerator, Variant
from wva_web.control import actions
from wva_web.control.models import AuditLog, ControlCycle, Decision, ScaleAction


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


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


def variant_url(variant: Variant) -> str:
    return f"/api/v1/variants/{variant.pk}/"


def add_decision(variant: Variant) -> Decision:
    now = timezone.now()
    cycle = ControlCycle.objects.create(
        started_at=now, finished_at=now, policy="wva-v1"
    )
    return Decision.objects.create(
        cycle=cycle,
        variant=variant,
        current_replicas=2,
        ready_replicas=2,
        target_replicas=3,
    )


@pytest.fixture
def no_hpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """No HPA targets any workload."""
    from wva_web.catalog import forms

    monkeypatch.setattr(forms, "find_conflicting_hpa", lambda variant: None)


# Mode auto skips the approval step, so only approvers choose it.


def test_operator_create_auto_403(world: World, no_hpa: None) -> None:
    response = client_for(world.u1).post(
        "/api/v1/variants/",
        variant_payload(world, mode="auto", min_replicas=3),
        format="json",
    )
    assert response.status_code == 403
    assert "approver role in team team-a" in response.json()["detail"]
    assert not Variant.objects.filter(name="llama-h100-new").exists()


def test_operator_patch_mode_auto_403(world: World, no_hpa: None) -> None:
    response = client_for(world.u1).patch(
        variant_url(world.variant_a),
        {"mode": "auto", "min_replicas": 5},
        format="json",
    )
    world.variant_a.refresh_from_db()
    assert response.status_code == 403
    assert "approver role" in response.json()["detail"]
    assert world.variant_a.mode == Variant.Mode.APPROVAL
    assert world.variant_a.min_replicas == 1


def test_operator_put_mode_auto_403(world: World, no_hpa: None) -> None:
    body = variant_payload(
        world,
        name=world.variant_a.name,
        workload_name=world.variant_a.workload_name,
        mode="auto",
    )
    response = client_for(world.u1).put(
        variant_url(world.variant_a), body, format="json"
    )
    world.variant_a.refresh_from_db()
    assert response.status_code == 403
    assert world.variant_a.mode == Variant.Mode.APPROVAL


def test_approver_patch_mode_auto_200(world: World, no_hpa: None) -> None:
    response = client_for(world.u2).patch(
        variant_url(world.variant_a), {"mode": "auto"}, format="json"
    )
    world.variant_a.refresh_from_db()
    assert response.status_code == 200
    assert world.variant_a.mode == Variant.Mode.AUTO


def test_other_team_approver_patch_auto_404(world: World, no_hpa: None) -> None:
    response = client_for(world.u3).patch(
        variant_url(world.variant_a), {"mode": "auto"}, format="json"
    )
    assert response.status_code == 404


def test_operator_bounds_on_auto_variant_audited(world: World, no_hpa: None) -> None:
    Variant.objects.filter(pk=world.variant_a.pk).update(mode=Variant.Mode.AUTO)
    response = client_for(world.u1).patch(
        variant_url(world.variant_a), {"min_replicas": 3}, format="json"
    )
    row = AuditLog.objects.get(object_type="variant", verb="update")
    assert response.status_code == 200
    assert row.actor == world.u1
    assert row.object_id == str(world.variant_a.pk)
    assert row.before == {"min_replicas": 1}
    assert row.after == {"min_replicas": 3}
    assert "min_replicas 1 -> 3" in row.message


def test_operator_other_mode_change_allowed(world: World) -> None:
    response = client_for(world.u1).patch(
        variant_url(world.variant_a), {"mode": "advisory"}, format="json"
    )
    assert response.status_code == 200


def test_admin_form_auto_needs_approver(world: World, no_hpa: None) -> None:
    data = admin_form_data(world.variant_a, mode="auto")
    form = VariantForm(data=data, instance=world.variant_a)
    form.user = world.u1
    assert not form.is_valid()
    assert "approver role in team team-a" in form.errors["mode"][0]


def test_admin_form_auto_by_approver_valid(world: World, no_hpa: None) -> None:
    data = admin_form_data(world.variant_a, mode="auto")
    form = VariantForm(data=data, instance=world.variant_a)
    form.user = world.u2
    assert form.is_valid(), form.errors


# Audit rows of catalogue writes through the API.


def test_variant_create_audited(world: World) -> None:
    response = client_for(world.u1).post(
        "/api/v1/variants/", variant_payload(world), format="json"
    )
    row = AuditLog.objects.get(object_type="variant", verb="create")
    assert response.status_code == 201
    assert row.actor == world.u1
    assert row.object_id == str(response.json()["id"])
    assert row.before == {}
    assert row.after["name"] == "llama-h100-new"
    assert row.after["mode"] == "approval"


def test_variant_update_audits_changed_fields_only(world: World) -> None:
    client_for(world.u1).patch(
        variant_url(world.variant_a),
        {"max_replicas": 6, "min_replicas": 1},
        format="json",
    )
    row = AuditLog.objects.get(object_type="variant", verb="update")
    assert row.before == {"max_replicas": 10}
    assert row.after == {"max_replicas": 6}


def test_variant_update_without_change_not_audited(world: World) -> None:
    client_for(world.u1).patch(
        variant_url(world.variant_a), {"max_replicas": 10}, format="json"
    )
    assert not AuditLog.objects.filter(object_type="variant").exists()


def test_accelerator_create_update_delete_audited(world: World) -> None:
    client = client_for(world.u1)
    created = client.post(
        "/api/v1/accelerators/",
        {
            "name": "L4",
            "memory_gb": 24,
            "usd_per_gpu_hour": 0.8,
            "power_idle_w": 20,
            "power_mid_w": 50,
            "power_full_w": 72,
        },
        format="json",
    ).json()
    url = f"/api/v1/accelerators/{created['id']}/"
    client.patch(url, {"usd_per_gpu_hour": 0.9}, format="json")
    deleted = client.delete(url)
    rows = AuditLog.objects.filter(object_type="accelerator").order_by("pk")
    assert deleted.status_code == 204
    assert [row.verb for row in rows] == ["create", "update", "delete"]
    assert rows[1].before == {"usd_per_gpu_hour": 0.8}
    assert rows[1].after == {"usd_per_gpu_hour": 0.9}
    assert rows[2].before["name"] == "L4"
    assert rows[2].after == {}
    assert {row.actor for row in rows} == {world.u1}


def test_model_update_audited_and_visible_to_team(world: World) -> None:
    model_id = world.variant_a.model_id
    client_for(world.u1).patch(
        f"/api/v1/models/{model_id}/", {"kv_cache_threshold": 0.7}, format="json"
    )
    body = client_for(world.viewer_a).get("/api/v1/audit-log/").json()
    rows = [row for row in body["results"] if row["object_type"] == "inference_model"]
    assert len(rows) == 1
    assert rows[0]["after"] == {"kv_cache_threshold": 0.7}


# Deleting a variant with approval history.


def test_delete_variant_with_actions_409(world: World) -> None:
    proposal = actions.propose_action(world.variant_a.pk, 2, 3)
    response = client_for(world.u1).delete(variant_url(world.variant_a))
    assert response.status_code == 409
    assert "mode to advisory" in response.json()["detail"]
    assert Variant.objects.filter(pk=world.variant_a.pk).exists()
    assert ScaleAction.objects.filter(pk=proposal.pk).exists()


def test_delete_variant_with_decision_only_409(world: World) -> None:
    decision = add_decision(world.variant_a)
    response = client_for(world.u1).delete(variant_url(world.variant_a))
    assert response.status_code == 409
    assert "1 decision(s)" in response.json()["detail"]
    assert Decision.objects.filter(pk=decision.pk).exists()


def test_delete_variant_without_history_204_audited(world: World) -> None:
    pk = world.variant_a.pk
    response = client_for(world.u1).delete(variant_url(world.variant_a))
    row = AuditLog.objects.get(object_type="variant", verb="delete")
    assert response.status_code == 204
    assert not Variant.objects.filter(pk=pk).exists()
    assert row.actor == world.u1
    assert row.object_id == str(pk)
    assert row.before["name"] == "llama-h100-a"


def test_model_delete_guard_on_instance(world: World) -> None:
    actions.propose_action(world.variant_a.pk, 2, 3)
    with pytest.raises(VariantHistoryProtected), transaction.atomic():
        world.variant_a.delete()
    assert Variant.objects.filter(pk=world.variant_a.pk).exists()


def test_model_delete_guard_on_queryset(world: World) -> None:
    add_decision(world.variant_b)
    with pytest.raises(VariantHistoryProtected), transaction.atomic():
        Variant.objects.filter(pk=world.variant_b.pk).delete()
    assert Variant.objects.filter(pk=world.variant_b.pk).exists()


# The admin: same refusal, same audit rows.


def admin_form_data(variant: Variant, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": variant.name,
        "model": variant.model_id,
        "accelerator": variant.accelerator_id,
        "gpus_per_replica": variant.gpus_per_replica,
        "max_num_seqs": variant.max_num_seqs,
        "max_model_len": variant.max_model_len,
        "max_num_batched_tokens": "",
        "profile": "{}",
        "min_replicas": variant.min_replicas,
        "max_replicas": variant.max_replicas,
        "mode": variant.mode,
        "namespace": variant.namespace,
        "kind": variant.kind,
        "workload_name": variant.workload_name,
        "hpa_metrics": json.dumps(variant.hpa_metrics),
    }
    data.update(changes)
    return data


def admin_client(world: World) -> Client:
    client = Client()
    client.force_login(world.superuser)
    return client


def test_admin_delete_page_refuses_variant_with_history(world: World) -> None:
    actions.propose_action(world.variant_a.pk, 2, 3)
    url = f"/admin/catalog/variant/{world.variant_a.pk}/delete/"
    client = admin_client(world)
    page = client.get(url)
    client.post(url, {"post": "yes"})
    assert page.status_code == 200
    assert b"mode to advisory" in page.content
    assert Variant.objects.filter(pk=world.variant_a.pk).exists()


def test_admin_bulk_delete_refuses_variant_with_history(world: World) -> None:
    add_decision(world.variant_a)
    response = admin_client(world).post(
        "/admin/catalog/variant/",
        {
            "action": "delete_selected",
            "_selected_action": [world.variant_a.pk, world.variant_b.pk],
            "post": "yes",
        },
    )
    assert b"mode to advisory" in response.content
    assert Variant.objects.filter(pk=world.variant_a.pk).exists()
    assert Variant.objects.filter(pk=world.variant_b.pk).exists()


def test_admin_delete_variant_without_history_audited(world: World) -> None:
    pk = world.variant_b.pk
    url = f"/admin/catalog/variant/{pk}/delete/"
    response = admin_client(world).post(url, {"post": "yes"})
    row = AuditLog.objects.get(object_type="variant", verb="delete")
    assert response.status_code == 302
    assert not Variant.objects.filter(pk=pk).exists()
    assert row.actor == world.superuser
    assert row.object_id == str(pk)


def test_admin_variant_change_audited(world: World) -> None:
    url = f"/admin/catalog/variant/{world.variant_a.pk}/change/"
    data = admin_form_data(world.variant_a, max_replicas=7)
    response = admin_client(world).post(url, data)
    row = AuditLog.objects.get(object_type="variant", verb="update")
    assert response.status_code == 302
    assert row.actor == world.superuser
    assert row.before == {"max_replicas": 10}
    assert row.after == {"max_replicas": 7}


def test_admin_accelerator_add_audited(world: World) -> None:
    data = {
        "name": "L40S",
        "vendor": "NVIDIA",
        "node_label_value": "",
        "memory_gb": 48,
        "usd_per_gpu_hour": 1.86,
        "power_idle_w": 60,
        "power_mid_w": 200,
        "power_full_w": 350,
        "gpus_available": "",
        "source": "",
    }
    response = admin_client(world).post("/admin/catalog/accelerator/add/", data)
    accelerator = Accelerator.objects.get(name="L40S")
    row = AuditLog.objects.get(object_type="accelerator", verb="create")
    assert response.status_code == 302
    assert row.object_id == str(accelerator.pk)
    assert row.after["usd_per_gpu_hour"] == 1.86


def test_admin_membership_change_audited(world: World) -> None:
    membership = world.u1.memberships.get()
    team = world.team_a
    prefix = "memberships"
    members = list(team.memberships.order_by("pk"))
    data: dict[str, Any] = {
        "name": team.name,
        f"{prefix}-TOTAL_FORMS": len(members),
        f"{prefix}-INITIAL_FORMS": len(members),
        f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000,
    }
    for index, member in enumerate(members):
        role = "approver" if member.pk == membership.pk else member.role
        data[f"{prefix}-{index}-id"] = member.pk
        data[f"{prefix}-{index}-team"] = team.pk
        data[f"{prefix}-{index}-user"] = member.user_id
        data[f"{prefix}-{index}-role"] = role
    response = admin_client(world).post(f"/admin/catalog/team/{team.pk}/change/", data)
    row = AuditLog.objects.get(object_type="membership", verb="update")
    assert response.status_code == 302
    assert row.object_id == str(membership.pk)
    assert row.before == {"role": "operator"}
    assert row.after == {"role": "approver"}
