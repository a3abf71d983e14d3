"""State changes made by the control cycle's safety rules, each with an audit row.

`fail_unschedulable` moves an applied scale-up to `failed` when the replica
it created stayed Pending past `WVA_PENDING_TIMEOUT_S`. Like the other
action functions, it is a conditional UPDATE on the expected state
(`applied`), so a second cycle cannot fail the same action twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from django.db import transaction

from wva_web.catalog.models import Variant
from wva_web.control.models import ActionState, AuditLog, ScaleAction

logger = logging.getLogger(__name__)

UNSCHEDULABLE = "unschedulable"


def fail_unschedulable(
    variant: Variant, current: int, pods: Sequence[str], now: datetime
) -> ScaleAction | None:
    """Fail the applied scale-up that set the variant to `current` replicas.

    Returns the failed action, or None when no applied scale-up to
    `current` exists or another writer changed it first.
    """
    action = (
        ScaleAction.objects.filter(variant=variant, state=ActionState.APPLIED)
        .order_by("-created_at", "-pk")
        .first()
    )
    if action is None or action.effective_replicas != current:
        return None
    if action.effective_replicas <= action.from_replicas:
        return None
    message = f"{', '.join(pods)} stayed Pending past the timeout: no node can run it"
    with transaction.atomic():
        updated = ScaleAction.objects.filter(
            pk=action.pk, state=ActionState.APPLIED
        ).update(
            state=ActionState.FAILED, failure_reason=UNSCHEDULABLE, message=message
        )
        if updated != 1:
            logger.info(
                "scale action %s not failed: it is no longer applied", action.pk
            )
            return None
        AuditLog.objects.create(
            at=now,
            actor=None,
            verb="fail",
            object_type="scale_action",
            object_id=str(action.pk),
            before={"state": ActionState.APPLIED},
            after={"state": ActionState.FAILED, "failure_reason": UNSCHEDULABLE},
            message=message,
        )
    logger.warning(
        "scale action %s failed: variant=%s from=%s to=%s accelerator=%s reason=%s",
        action.pk,
        variant.name,
        action.from_replicas,
        action.effective_replicas,
        variant.accelerator.name,
        UNSCHEDULABLE,
    )
    action.refresh_from_db()
    return action
