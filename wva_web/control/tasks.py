"""Celery tasks of the control loop. Tasks take ids, never model objects."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.conf import settings
from django.db import OperationalError

from wva_web.control import actions
from wva_web.control.cycle import run_cycle
from wva_web.control.models import ScaleAction
from wva_web.integrations import leader
from wva_web.integrations.kube import TransientActuatorError

logger = logging.getLogger(__name__)

# Transient actuator errors and database errors such as SQLite's "database
# is locked" are retried after 1, 2, 4, 8 and 16 s, at most APPLY_BACKOFF_MAX_S.
APPLY_MAX_RETRIES = 5
APPLY_BACKOFF_MAX_S = 60
RETRYABLE_ERRORS = (TransientActuatorError, OperationalError)


class ApplyRetryError(Exception):
    """The message of a retried apply error, in an exception that pickles.

    Celery pickles the exception of a retry. A plain exception with one
    message argument survives that, where a driver's error may reach the
    log as `UnpickleableExceptionWrapper`.
    """


@shared_task(
    name="wva.run_control_cycle",
    ignore_result=True,
    soft_time_limit=settings.WVA_CYCLE_SOFT_LIMIT_S,
    time_limit=settings.WVA_CYCLE_HARD_LIMIT_S,
)
def run_control_cycle() -> int | None:
    """Run one control cycle and return its id.

    The cycle runs read-only when another instance has the leader Lease, or
    when this instance cannot lead (403 or 404 on the Lease, or a Lease API
    failure past its renew deadline). A read-only cycle stores what it read
    and decided, so this instance's pages stay current. It also fails this
    instance's overdue approved actions, and it proposes and applies
    nothing. Returns None when another cycle of this instance has the lock.
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
    max_retries=APPLY_MAX_RETRIES,
    soft_time_limit=settings.WVA_CYCLE_SOFT_LIMIT_S,
    time_limit=settings.WVA_CYCLE_HARD_LIMIT_S,
)
def apply_scale_action(self: Task, action_id: int) -> str:
    """Apply one approved scale action; return the state it ended in.

    Only the instance that leads the cluster applies. Elsewhere the action
    keeps its state, and the leader's cycle queues it again once it is two
    periods old. `apply_action` re-reads the action and the live replica
    count, so a task that runs late or twice changes nothing. After the
    last retry of a Kubernetes or database error, the action fails with
    `actuator_unavailable` or `database_unavailable`.
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
    try:
        action = actions.apply_action(action_id)
    except RETRYABLE_ERRORS as exc:
        return _retry_or_fail(self, action_id, exc)
    return str(action.state)


def _retry_or_fail(task: Task, action_id: int, exc: Exception) -> str:
    """Retry the apply with backoff, or fail the action after the last retry."""
    retries = int(task.request.retries or 0)
    message = str(exc) or type(exc).__name__
    if retries < APPLY_MAX_RETRIES:
        countdown = min(APPLY_BACKOFF_MAX_S, 2**retries)
        logger.warning(
            "applying scale action %s failed (retry %d of %d in %d s): %s: %s",
            action_id,
            retries + 1,
            APPLY_MAX_RETRIES,
            countdown,
            type(exc).__name__,
            message,
        )
        raise task.retry(exc=ApplyRetryError(message), countdown=countdown)
    logger.error(
        "applying scale action %s failed after %d retries: %s: %s",
        action_id,
        retries,
        type(exc).__name__,
        message,
    )
    if isinstance(exc, TransientActuatorError):
        reason = actions.ACTUATOR_UNAVAILABLE
    else:
        reason = actions.DATABASE_UNAVAILABLE
    try:
        action = actions.fail_unapplied(action_id, reason, message)
    except OperationalError as db_exc:
        # The action stays approved until the cycle's apply deadline fails it.
        logger.error(
            "recording the failure of scale action %s failed: %s", action_id, db_exc
        )
        return ""
    return str(action.state) if action is not None else ""
