"""State changes of scale actions, each with an audit row and a log line.

Every transition is one conditional UPDATE that filters on the action's id
and on the state read just before, followed by a check that exactly one row
changed. The loser of a race gets `ActionConflict` naming the state it
found, which the API returns as 409.

Authorisation runs here, not only in the views. Approving, rejecting and
overriding need the approver role in the variant's team (see
`wva_web.catalog.access`). An action of a team the user cannot see raises
`ActionNotFound`, so the API returns 404 without revealing that it exists.

Who supersedes whom: a newer proposal supersedes the older pending actions
of the same variant and the same requester (the control cycle, or one
user). Requests of different people stay side by side for an approver to
choose, and whichever is applied first makes the others fail with
`base_changed` when they are applied.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from wva_web.catalog import access
from wva_web.catalog.models import Role, Variant
from wva_web.control.models import (
    ActionState,
    AuditLog,
    ScaleAction,
    VariantState,
)

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

CONFLICT_WORDS = {
    ActionState.PENDING: "still pending",
    ActionState.APPROVED: "already approved",
    ActionState.REJECTED: "already rejected",
    ActionState.OVERRIDDEN: "already overridden",
    ActionState.APPLIED: "already applied",
    ActionState.FAILED: "already failed",
    ActionState.SUPERSEDED: "superseded by a newer proposal",
    ActionState.EXPIRED: "expired",
}
BASE_CHANGED = "base_changed"
ACTUATOR_ERROR = "actuator_error"
# Failure reasons of an approved action whose apply never completed: the
# Kubernetes API or the database kept failing through every retry, or the
# action stayed unapplied past WVA_APPLY_DEADLINE_S.
ACTUATOR_UNAVAILABLE = "actuator_unavailable"
DATABASE_UNAVAILABLE = "database_unavailable"
APPLY_TIMEOUT = "apply_timeout"
# Default of WVA_APPLY_DEADLINE_S, in seconds after the approval.
APPLY_DEADLINE_S = 600.0
MODE_ADVISORY = "mode_advisory"
SUPERSEDED = "superseded"


class ActionError(Exception):
    """Base class of the errors raised by the action functions."""


class ActionConflict(ActionError):
    """The action is no longer in the state the change expects (HTTP 409)."""


class ActionNotFound(ActionError):
    """No such action, or one of a team the user cannot see (HTTP 404)."""


class ActionForbidden(ActionError, PermissionDenied):
    """The user may see the action but not make this change (HTTP 403)."""


class ActionInvalid(ActionError):
    """An argument is invalid, and `field` names it (HTTP 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Actuator(Protocol):
    def read_replicas(self, variant: Variant) -> int: ...

    def set_replicas(
        self,
        variant: Variant,
        replicas: int,
        victim_pod: str = "",
        dry_run: bool = False,
        note: Any = None,
    ) -> None: ...


def _actor_name(user: User | None) -> str:
    return "system" if user is None else str(user.get_username())


def _user_or_none(user: User | None) -> AbstractBaseUser | None:
    if user is None or not user.is_authenticated:
        return None
    return user  # type: ignore[return-value]


def _load(action_id: int) -> ScaleAction:
    try:
        return ScaleAction.objects.select_related(
            "variant__accelerator", "variant__model", "requested_by", "decided_by"
        ).get(pk=action_id)
    except ScaleAction.DoesNotExist:
        raise ActionNotFound(f"scale action {action_id} not found") from None


def _load_visible(action_id: int, user: User | None) -> ScaleAction:
    """Load the action if the user may see it. A None user is the control cycle."""
    if (
        user is not None
        and not access.visible_actions(user).filter(pk=action_id).exists()
    ):
        raise ActionNotFound(f"scale action {action_id} not found")
    return _load(action_id)


def _conflict(action_id: int, verb: str) -> ActionConflict:
    state = (
        ScaleAction.objects.filter(pk=action_id).values_list("state", flat=True).first()
    )
    if state is None:
        return ActionConflict(
            f"cannot {verb} scale action {action_id}: it no longer exists"
        )
    words = CONFLICT_WORDS.get(ActionState(state), state)
    return ActionConflict(f"cannot {verb} scale action {action_id}: it is {words}")


def _snapshot(action: ScaleAction) -> dict[str, Any]:
    return {
        "state": action.state,
        "from_replicas": action.from_replicas,
        "to_replicas": action.to_replicas,
        "override_replicas": action.override_replicas,
        "failure_reason": action.failure_reason,
    }


def _log_change(action: ScaleAction, verb: str, user: User | None) -> None:
    variant = action.variant
    logger.info(
        "scale action %s %s: variant=%s from=%s to=%s accelerator=%s state=%s "
        "reason=%s by=%s approved_by=%s dry_run=%s",
        action.pk,
        verb,
        variant.name,
        action.from_replicas,
        action.effective_replicas,
        variant.accelerator.name,
        action.state,
        action.failure_reason or ",".join(str(r) for r in action.reasons) or "-",
        _actor_name(user),
        _approver_name(action),
        action.dry_run,
    )


def _approver_name(action: ScaleAction) -> str:
    if action.decided_by_id is None:
        return "system" if action.decided_at is not None else "-"
    return str(action.decided_by.get_username())


def _transition(
    action: ScaleAction,
    expected: str,
    verb: str,
    user: User | None,
    changes: dict[str, Any],
    message: str = "",
) -> ScaleAction:
    """Move `action` from `expected` to the state in `changes`, or raise 409.

    Must run inside a transaction so the audit row lands with the change.
    """
    before = _snapshot(action)
    updated = ScaleAction.objects.filter(pk=action.pk, state=expected).update(**changes)
    if updated != 1:
        raise _conflict(action.pk, verb)
    for name, value in changes.items():
        setattr(action, name, value)
    AuditLog.objects.create(
        at=timezone.now(),
        actor=_user_or_none(user),
        verb=verb,
        object_type="scale_action",
        object_id=str(action.pk),
        before=before,
        after=_snapshot(action),
        message=message,
    )
    _log_change(action, verb, user)
    return action


def _send_apply(action_id: int) -> None:
    """Queue the apply task. Called after the deciding transaction commits."""
    from wva_web.control import tasks

    try:
        tasks.apply_scale_action.delay(action_id)
    except Exception:
        # The action stays approved; the leader's next cycles queue it again.
        logger.exception("queueing the apply of scale action %s failed", action_id)


def _resend_apply(action_id: int, expires_s: float) -> None:
    """Queue the apply task again; a message not run within `expires_s` is dropped."""
    from wva_web.control import tasks

    try:
        tasks.apply_scale_action.apply_async((action_id,), expires=expires_s)
    except Exception:
        logger.exception(
            "queueing the apply of scale action %s again failed", action_id
        )


def requeue_unapplied(now: dt.datetime, older_than_s: float) -> list[int]:
    """Queue the apply of approved or overridden actions decided before the cutoff.

    Such an action lost its apply task: the broker send failed after the
    commit, a worker died, or an instance that did not lead received it.
    Each queued message expires after `older_than_s`, so a worker that is
    down collects at most a few copies per action. Running an extra copy
    changes nothing, because `apply_action` checks the state and the live
    count first. Returns the ids queued.
    """
    cutoff = now - dt.timedelta(seconds=older_than_s)
    stale = list(
        ScaleAction.objects.filter(
            state__in=(ActionState.APPROVED, ActionState.OVERRIDDEN),
            decided_at__lt=cutoff,
            applied_at__isnull=True,
        )
        .order_by("decided_at", "pk")
        .values_list("pk", "decided_at")
    )
    for action_id, decided_at in stale:
        logger.warning(
            "scale action %s was approved at %s and is still not applied: "
            "queueing its apply again",
            action_id,
            decided_at.isoformat(),
        )
        _resend_apply(action_id, older_than_s)
    return [action_id for action_id, _ in stale]


def _queue_apply_on_commit(action_id: int) -> None:
    transaction.on_commit(lambda: _send_apply(action_id))


def _check_decider(action: ScaleAction, user: User | None, verb: str) -> None:
    """Raise unless the user may approve or override the action."""
    if user is None:
        if action.variant.mode != Variant.Mode.AUTO:
            raise ActionForbidden(
                f"the control cycle may {verb} only actions of variants in mode auto"
            )
        return
    if not access.has_role(user, action.variant.model.team_id, Role.APPROVER):
        raise ActionForbidden(
            f"{verb} needs the approver role in team {action.variant.team}"
        )
    own = action.requested_by_id is not None and action.requested_by_id == user.pk
    # Four-eyes mode extends the self-approval rule to superusers.
    if own and (settings.WVA_FOUR_EYES or not access.is_superuser(user)):
        raise ActionForbidden(
            f"you requested scale action {action.pk}, "
            f"so another approver must {verb} it"
        )


def propose_action(
    variant_id: int,
    from_replicas: int,
    to_replicas: int,
    decision_id: int | None = None,
    reasons: Sequence[str] = (),
    victim_pod: str = "",
    requested_by: User | None = None,
) -> ScaleAction:
    """Create a pending action, superseding older ones of the same requester.

    An identical pending action (same variant, requester, from and to) is
    returned as it is instead of creating a duplicate every cycle.
    """
    requester = _user_or_none(requested_by)
    with transaction.atomic():
        open_actions = ScaleAction.objects.select_related(
            "variant__accelerator", "requested_by"
        ).filter(
            variant_id=variant_id, state=ActionState.PENDING, requested_by=requester
        )
        for existing in open_actions:
            if (existing.from_replicas, existing.to_replicas) == (
                from_replicas,
                to_replicas,
            ):
                return existing
        action = ScaleAction.objects.create(
            variant_id=variant_id,
            decision_id=decision_id,
            created_at=timezone.now(),
            from_replicas=from_replicas,
            to_replicas=to_replicas,
            requested_by=requester,
            reasons=list(reasons),
            victim_pod=victim_pod,
        )
        action = _load(action.pk)
        _audit_create(action, requested_by)
        for older in open_actions:
            _supersede(older, action, requested_by)
    return action


def _audit_create(action: ScaleAction, user: User | None) -> None:
    AuditLog.objects.create(
        at=action.created_at,
        actor=_user_or_none(user),
        verb="propose",
        object_type="scale_action",
        object_id=str(action.pk),
        before={},
        after=_snapshot(action),
        message=", ".join(str(r) for r in action.reasons),
    )
    _log_change(action, "propose", user)


def _supersede(older: ScaleAction, newer: ScaleAction, user: User | None) -> None:
    change = f"{newer.from_replicas}->{newer.to_replicas}"
    message = f"superseded by scale action {newer.pk} ({change})"
    try:
        with transaction.atomic():
            _transition(
                older,
                ActionState.PENDING,
                "supersede",
                user,
                {
                    "state": ActionState.SUPERSEDED,
                    "failure_reason": SUPERSEDED,
                    "message": message,
                },
                message,
            )
    except ActionConflict as exc:
        # An approver decided it first: its apply step checks the base.
        logger.info("scale action %s not superseded: %s", older.pk, exc)


def supersede_held_scale_ups(variant_id: int, reason: str) -> list[ScaleAction]:
    """Supersede the control cycle's pending scale-ups of a variant now blocked.

    `reason` is the code of the rule that blocks the scale-up, such as
    `queue_without_progress` or `no_free_gpu:L40S`. Requests of people stay
    pending. Returns the actions superseded.
    """
    pending = ScaleAction.objects.select_related("variant__accelerator").filter(
        variant_id=variant_id,
        state=ActionState.PENDING,
        requested_by__isnull=True,
        to_replicas__gt=F("from_replicas"),
    )
    message = f"scale-up held by the control cycle: {reason}"
    superseded = []
    for action in pending:
        try:
            with transaction.atomic():
                _transition(
                    action,
                    ActionState.PENDING,
                    "supersede",
                    None,
                    {
                        "state": ActionState.SUPERSEDED,
                        "failure_reason": SUPERSEDED,
                        "message": message,
                    },
                    message,
                )
        except ActionConflict as exc:
            logger.info("scale action %s not superseded: %s", action.pk, exc)
            continue
        superseded.append(action)
    return superseded


def request_manual_action(
    user: User, variant: Variant, to_replicas: int
) -> ScaleAction:
    """Record a person's request to set a variant to `to_replicas` (operator role)."""
    if not access.visible_variants(user).filter(pk=variant.pk).exists():
        raise ActionNotFound(f"variant {variant.pk} not found")
    if not access.has_role(user, variant.model.team_id, Role.OPERATOR):
        raise ActionForbidden(
            f"requesting needs the operator role in team {variant.team}"
        )
    if variant.mode == Variant.Mode.ADVISORY:
        raise ActionInvalid(
            "variant",
            f"{variant.name} is in mode advisory (record only). Set mode approval "
            "to scale it from the console",
        )
    _check_range(variant, to_replicas, "to_replicas")
    current = (
        VariantState.objects.filter(variant=variant)
        .values_list("current_replicas", flat=True)
        .first()
    )
    if current is None:
        raise ActionInvalid(
            "variant",
            f"the current replica count of {variant.name} is unknown until a "
            "control cycle has read it. Try again after the next cycle",
        )
    if current == to_replicas:
        raise ActionInvalid(
            "to_replicas", f"{variant.name} already runs {current} replicas"
        )
    return propose_action(
        variant.pk, current, to_replicas, reasons=["manual_request"], requested_by=user
    )


def _check_range(variant: Variant, replicas: int, field: str) -> None:
    if not variant.min_replicas <= replicas <= variant.max_replicas:
        raise ActionInvalid(
            field,
            f"{field} ({replicas}) must be within min_replicas "
            f"({variant.min_replicas}) and max_replicas ({variant.max_replicas}) "
            f"of {variant.name}",
        )


def approve_action(action_id: int, user: User | None) -> ScaleAction:
    """Approve a pending action and queue its apply after commit.

    `user` None is the control cycle, allowed only for variants in mode auto.
    """
    action = _load_visible(action_id, user)
    _check_decider(action, user, "approve")
    with transaction.atomic():
        _transition(
            action,
            ActionState.PENDING,
            "approve",
            user,
            {
                "state": ActionState.APPROVED,
                "decided_by": _user_or_none(user),
                "decided_at": timezone.now(),
            },
        )
        _queue_apply_on_commit(action.pk)
    return action


def reject_action(action_id: int, user: User, message: str = "") -> ScaleAction:
    """Reject a pending action: an approver of the team, or its own requester."""
    action = _load_visible(action_id, user)
    own = action.requested_by_id is not None and action.requested_by_id == user.pk
    team_id = action.variant.model.team_id
    if not (access.has_role(user, team_id, Role.APPROVER) or own):
        raise ActionForbidden(
            f"reject needs the approver role in team {action.variant.team}"
        )
    with transaction.atomic():
        _transition(
            action,
            ActionState.PENDING,
            "reject",
            user,
            {
                "state": ActionState.REJECTED,
                "decided_by": _user_or_none(user),
                "decided_at": timezone.now(),
                "message": message,
            },
            message,
        )
    return action


def override_action(
    action_id: int, user: User, replicas: int, duration_s: float | None = None
) -> ScaleAction:
    """Apply `replicas` instead of the proposed count, and queue the apply.

    With `duration_s`, the variant is also pinned at `replicas` until then.
    Without it, nothing is pinned and the next cycle plans from the count
    this override sets.
    """
    action = _load_visible(action_id, user)
    _check_decider(action, user, "override")
    variant = action.variant
    _check_range(variant, replicas, "replicas")
    if duration_s is not None and not 0 < duration_s <= 7 * 86400:
        raise ActionInvalid(
            "duration_s", "duration_s must be above 0 and at most 604800 (7 days)"
        )
    now = timezone.now()
    until = now + dt.timedelta(seconds=duration_s) if duration_s is not None else None
    with transaction.atomic():
        _transition(
            action,
            ActionState.PENDING,
            "override",
            user,
            {
                "state": ActionState.OVERRIDDEN,
                "decided_by": _user_or_none(user),
                "decided_at": now,
                "override_replicas": replicas,
                "override_until": until,
            },
            f"override to {replicas} replicas",
        )
        if until is not None:
            variant.pinned_replicas = replicas
            variant.pinned_until = until
            variant.save(update_fields=["pinned_replicas", "pinned_until"])
        _queue_apply_on_commit(action.pk)
    return action


def expire_actions(now: dt.datetime) -> int:
    """Expire pending actions older than WVA_ACTION_TTL_S and return their number."""
    cutoff = now - dt.timedelta(seconds=settings.WVA_ACTION_TTL_S)
    stale = ScaleAction.objects.select_related("variant__accelerator").filter(
        state=ActionState.PENDING, created_at__lt=cutoff
    )
    expired = 0
    for action in stale:
        try:
            with transaction.atomic():
                _transition(
                    action,
                    ActionState.PENDING,
                    "expire",
                    None,
                    {"state": ActionState.EXPIRED},
                    f"pending for more than {settings.WVA_ACTION_TTL_S:g} s",
                )
        except ActionConflict as exc:
            logger.info("scale action %s not expired: %s", action.pk, exc)
            continue
        expired += 1
    return expired


def _permanent_errors() -> tuple[type[BaseException], ...]:
    try:
        from wva_web.integrations.kube import PermanentActuatorError
    except ImportError:
        # NOTE: without the actuator module no error is treated as permanent.
        return ()
    return (PermanentActuatorError,)


def _default_actuator() -> Actuator:
    from wva_web.integrations.kube import get_actuator

    return get_actuator()


def apply_action(action_id: int, actuator: Actuator | None = None) -> ScaleAction:
    """Set the variant to the action's absolute count, if the base still holds.

    Applies approved and overridden actions, and pending actions of variants
    in mode auto (approved first by the control cycle). The live count is
    read again: when it differs from `from_replicas`, the action fails with
    `base_changed` and nothing is set. When it already equals the target,
    an earlier run set it, and the action is marked applied without a write.
    Applying twice does nothing the second time. Transient actuator errors
    and database errors propagate so the caller can retry.
    """
    action = _load(action_id)
    if action.state == ActionState.PENDING and action.variant.mode == Variant.Mode.AUTO:
        action = _approve_for_auto(action)
    if action.state not in (ActionState.APPROVED, ActionState.OVERRIDDEN):
        logger.info(
            "scale action %s not applied: it is %s",
            action.pk,
            CONFLICT_WORDS.get(ActionState(action.state), action.state),
        )
        return action
    actuator = actuator if actuator is not None else _default_actuator()
    with transaction.atomic():
        # The row lock keeps a second apply of the same action waiting until
        # this one has recorded its outcome. SQLite ignores the lock.
        locked = ScaleAction.objects.select_for_update().filter(pk=action.pk)
        state = locked.values_list("state", flat=True).first()
        if state != action.state:
            logger.info("scale action %s not applied: it became %s", action.pk, state)
            return _load(action.pk)
        return _apply_locked(action, actuator)


def _approve_for_auto(action: ScaleAction) -> ScaleAction:
    with transaction.atomic():
        try:
            _transition(
                action,
                ActionState.PENDING,
                "approve",
                None,
                {"state": ActionState.APPROVED, "decided_at": timezone.now()},
                "mode auto",
            )
        except ActionConflict as exc:
            logger.info(
                "scale action %s not approved for mode auto: %s", action.pk, exc
            )
            return _load(action.pk)
    return action


def _apply_locked(action: ScaleAction, actuator: Actuator) -> ScaleAction:
    variant = action.variant
    expected = action.state
    mode = Variant.objects.filter(pk=variant.pk).values_list("mode", flat=True).get()
    if mode == Variant.Mode.ADVISORY:
        # The variant may have moved to advisory because an HPA now scales it.
        return _fail(
            action,
            expected,
            MODE_ADVISORY,
            f"{variant.name} is in mode advisory (record only), so nothing was set",
        )

    permanent = _permanent_errors()
    try:
        live = actuator.read_replicas(variant)
    except permanent as exc:
        return _fail(
            action, expected, ACTUATOR_ERROR, f"reading the replica count failed: {exc}"
        )
    target = action.effective_replicas
    dry_run = bool(settings.WVA_DRY_RUN)
    if live == target and live != action.from_replicas:
        # An earlier run of this apply set the count and died before
        # recording it, so the action is done: nothing is set again.
        return _transition(
            action,
            expected,
            "apply",
            None,
            {"state": ActionState.APPLIED, "applied_at": timezone.now()},
            f"{variant.name} already runs {target} replicas, the action's target",
        )
    if live != action.from_replicas:
        return _fail(
            action,
            expected,
            BASE_CHANGED,
            f"expected {action.from_replicas} replicas, found {live}",
        )

    # An absolute count. The actuator marks the victim before lowering it.
    victim = action.victim_pod if target < live else ""
    from wva_web.integrations.kube import ChangeNote

    # The note names the action and its approver in the workload's Event.
    note = ChangeNote(
        action_id=action.pk,
        approved_by=_actor_name(action.decided_by),
        override=expected == ActionState.OVERRIDDEN,
    )
    try:
        actuator.set_replicas(
            variant, target, victim_pod=victim, dry_run=dry_run, note=note
        )
    except permanent as exc:
        return _fail(
            action, expected, ACTUATOR_ERROR, f"setting {target} replicas failed: {exc}"
        )

    return _transition(
        action,
        expected,
        "apply",
        None,
        {
            "state": ActionState.APPLIED,
            "applied_at": timezone.now(),
            "dry_run": dry_run,
        },
        f"set {variant.name} to {target} replicas" + (" (dry run)" if dry_run else ""),
    )


def _fail(action: ScaleAction, expected: str, reason: str, message: str) -> ScaleAction:
    logger.warning("scale action %s failed: %s: %s", action.pk, reason, message)
    return _transition(
        action,
        expected,
        "fail",
        None,
        {"state": ActionState.FAILED, "failure_reason": reason, "message": message},
        message,
    )


def fail_unapplied(action_id: int, reason: str, message: str) -> ScaleAction | None:
    """Fail an approved or overridden action whose apply gave up, with an audit row.

    `reason` is `actuator_unavailable` or `database_unavailable`. Returns the
    action as it ends, or None when it no longer exists. An action that
    another writer applied or decided first keeps that state.
    """
    try:
        action = _load(action_id)
    except ActionNotFound:
        logger.warning("scale action %s not failed: it no longer exists", action_id)
        return None
    if action.state not in (ActionState.APPROVED, ActionState.OVERRIDDEN):
        return action
    try:
        with transaction.atomic():
            return _fail(action, action.state, reason, message)
    except ActionConflict as exc:
        logger.info("scale action %s not failed: %s", action_id, exc)
        return _load(action_id)


def apply_deadline_s() -> float:
    """Return WVA_APPLY_DEADLINE_S: seconds an approved action may stay unapplied."""
    return float(getattr(settings, "WVA_APPLY_DEADLINE_S", APPLY_DEADLINE_S))


def fail_overdue_applies(now: dt.datetime, deadline_s: float) -> list[int]:
    """Fail approved or overridden actions decided more than `deadline_s` ago.

    Their apply task was lost for longer than its retries and the cycle's
    re-queues could cover, for example with no worker running. Failing them
    with `apply_timeout` opens the transition gate that blocks their model, so
    the next analysis plans from the live count. Returns the ids failed.
    """
    cutoff = now - dt.timedelta(seconds=deadline_s)
    overdue = ScaleAction.objects.select_related("variant__accelerator").filter(
        state__in=(ActionState.APPROVED, ActionState.OVERRIDDEN),
        decided_at__lt=cutoff,
        applied_at__isnull=True,
    )
    failed = []
    for action in overdue.order_by("decided_at", "pk"):
        age_s = (now - action.decided_at).total_seconds() if action.decided_at else 0
        message = (
            f"approved {age_s:.0f} s ago and not applied within the "
            f"{deadline_s:g} s deadline; the next cycle plans from the live count"
        )
        try:
            with transaction.atomic():
                _fail(action, action.state, APPLY_TIMEOUT, message)
        except ActionConflict as exc:
            logger.info("scale action %s not failed: %s", action.pk, exc)
            continue
        failed.append(action.pk)
    return failed
