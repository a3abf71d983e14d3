"""Celery tasks of the control loop. Tasks take ids, never model objects."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from wva_web.control import actions
from wva_web.control.cycle import run_cycle
from wva_web.control.models import ScaleAction
from wva_web.integrations import leader
from wva_web.integrations.kube import TransientActuatorError

logger = logging.getLogger(__name__)

# Transient actuator errors are retried with exponential backoff up to this cap.
APPLY_MAX_RETRIES = 5
APPLY_BACKOFF_MAX_S = 60


@shared_task(
    name="wva.run_control_cycle",
    ignore_result=True,
    soft_time_limit=settings.WVA_CYCLE_SOFT_LIMIT_S,
    time_limit=settings.WVA_CYCLE_HARD_LIMIT_S,
)
def run_control_cycle() -> int | None:
    """Run one control cycle and return its id.

    When another instance holds the leader Lease, or the Lease is not
    available, the cycle runs read-only: it stores what it read and
    decided, so this instance's pages stay current, and it proposes and
    applies nothing. Returns None when another cycle of this instance holds
    the cycle lock.
    """
    leadership = leader.elect()
    read_only = not leadership.is_leader
    if read_only:
        logger.info(
            "control cycle runs read-only: instance %s does not lead this "
            "cluster (%s): %s",
            settings.WVA_INSTANCE,
            leadership.reason,
            leadership.detail,
        )
    cycle = run_cycle(read_only=read_only, leader=leadership.holder)
    if cycle is None:
        logger.info("control cycle task skipped: the cycle lock is held")
        return None
    return cycle.pk


@shared_task(
    name="wva.apply_scale_action",
    bind=True,
    ignore_result=True,
    autoretry_for=(TransientActuatorError,),
    retry_backoff=True,
    retry_backoff_max=APPLY_BACKOFF_MAX_S,
    max_retries=APPLY_MAX_RETRIES,
    soft_time_limit=settings.WVA_CYCLE_SOFT_LIMIT_S,
    time_limit=settings.WVA_CYCLE_HARD_LIMIT_S,
)
def apply_scale_action(self: object, action_id: int) -> str:
    """Apply one approved scale action; return the state it ended in.

    Only the instance that leads the cluster applies; elsewhere the action
    keeps its state, and the leader's cycle queues it again once it is two
    periods old. `apply_action` re-reads the action and the live replica
    count, so a task that runs late or twice changes nothing.
    """
    leadership = leader.elect()
    if not leadership.is_leader:
        logger.warning(
            "scale action %s not applied: instance %s is read-only for this "
            "cluster (%s): %s",
            action_id,
            settings.WVA_INSTANCE,
            leadership.reason,
            leadership.detail,
        )
        state = ScaleAction.objects.filter(pk=action_id).values_list("state", flat=True)
        return str(state.first() or "")
    action = actions.apply_action(action_id)
    return str(action.state)
