"""Audit rows of catalogue changes made through the API or the admin.

Every create, update and delete of a team, membership, accelerator, service
class, model or variant writes one `AuditLog` row with the actor. An update
stores only the fields that changed, before and after. Callers write the row
in the same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from django.db import models
from django.utils import timezone

from wva_web.catalog.models import (
    Accelerator,
    InferenceModel,
    Membership,
    ServiceClass,
    Team,
    Variant,
)
from wva_web.control.models import AuditLog

logger = logging.getLogger(__name__)

OBJECT_TYPES: dict[type[models.Model], str] = {
    Team: "team",
    Membership: "membership",
    Accelerator: "accelerator",
    ServiceClass: "service_class",
    InferenceModel: "inference_model",
    Variant: "variant",
}


def object_type(instance: models.Model) -> str:
    return OBJECT_TYPES.get(type(instance), instance._meta.model_name or "object")


def _json_value(value: Any) -> Any:
    """Return a value that JSON stores as it is: no NaN, no infinity, no datetime."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def snapshot(instance: models.Model) -> dict[str, Any]:
    """Return the stored fields of a catalogue row; foreign keys as ids."""
    return {
        field.name: _json_value(field.value_from_object(instance))
        for field in instance._meta.concrete_fields
        if not field.primary_key
    }


def changed_fields(
    before: dict[str, Any], after: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the fields whose value differs, as (before, after)."""
    names = [name for name in after if before.get(name) != after[name]]
    return (
        {name: before.get(name) for name in names},
        {name: after[name] for name in names},
    )


def _actor(user: Any) -> Any:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user


def _summary(before: dict[str, Any], after: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {before.get(name)!r} -> {after.get(name)!r}" for name in after
    )


def _write(
    user: Any,
    verb: str,
    kind: str,
    object_id: Any,
    before: dict[str, Any],
    after: dict[str, Any],
    message: str,
) -> AuditLog:
    row = AuditLog.objects.create(
        at=timezone.now(),
        actor=_actor(user),
        verb=verb,
        object_type=kind,
        object_id=str(object_id),
        before=before,
        after=after,
        message=message,
    )
    logger.info(
        "catalogue %s of %s %s by %s: %s",
        verb,
        kind,
        object_id,
        getattr(user, "username", None) or "system",
        message,
    )
    return row


def record_create(user: Any, instance: models.Model) -> AuditLog:
    after = snapshot(instance)
    kind = object_type(instance)
    return _write(user, "create", kind, instance.pk, {}, after, f"created {instance}")


def record_update(
    user: Any, instance: models.Model, before: dict[str, Any]
) -> AuditLog | None:
    """Write the fields of `instance` that differ from `before`.

    Returns None, and writes nothing, when no field changed.
    """
    old, new = changed_fields(before, snapshot(instance))
    if not new:
        return None
    message = f"updated {instance}: {_summary(old, new)}"
    return _write(user, "update", object_type(instance), instance.pk, old, new, message)


def record_delete(
    user: Any, kind: str, object_id: Any, label: str, before: dict[str, Any]
) -> AuditLog:
    """Write the deletion of a row whose fields were read into `before`."""
    return _write(user, "delete", kind, object_id, before, {}, f"deleted {label}")
