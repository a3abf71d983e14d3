"""Team scoping: who may see and change which rows.

Roles are ranked per team: viewer < operator < approver. Each role includes
the rights of the roles below it, so an approver may also request scale
actions and edit the team's catalogue entries.

- viewer: reads the team's models, variants, samples, decisions, actions.
- operator: also creates and edits the team's models and variants, requests
  manual scale actions, and edits the global catalogue (accelerators and
  service classes), which every team shares.
- approver: also approves, rejects and overrides the team's scale actions.

Superusers see and change every team. Every queryset that a list, a detail
view, a create or an export reads goes through the helpers below, so a row
of another team is never visible by a path that forgot a check.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from wva_web.catalog.models import (
    ROLE_RANK,
    InferenceModel,
    Membership,
    Role,
    Team,
    Variant,
)
from wva_web.control.models import (
    AuditLog,
    ControlCycle,
    Decision,
    MetricSample,
    ScaleAction,
)

AnyUser = AbstractBaseUser | AnonymousUser


def is_superuser(user: AnyUser | None) -> bool:
    return bool(
        user is not None and user.is_active and getattr(user, "is_superuser", False)
    )


def _is_member_candidate(user: AnyUser | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def role_in(user: AnyUser | None, team: Team | int) -> str | None:
    """Return the user's role in the team, or None without a membership."""
    if not _is_member_candidate(user):
        return None
    team_id = team.pk if isinstance(team, Team) else team
    return (
        Membership.objects.filter(user=user, team_id=team_id)
        .values_list("role", flat=True)
        .first()
    )


def has_role(user: AnyUser | None, team: Team | int, minimum: Role) -> bool:
    """Return True when the user has `minimum` or a higher role in the team."""
    if is_superuser(user):
        return True
    role = role_in(user, team)
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[minimum]


def has_role_anywhere(user: AnyUser | None, minimum: Role) -> bool:
    """Return True when the user has `minimum` or higher in at least one team."""
    if is_superuser(user):
        return True
    return teams_with_role(user, minimum).exists()


def teams_with_role(user: AnyUser | None, minimum: Role) -> QuerySet[Team]:
    """Return the teams where the user has `minimum` or a higher role."""
    if is_superuser(user):
        return Team.objects.all()
    if not _is_member_candidate(user):
        return Team.objects.none()
    roles = [role for role, rank in ROLE_RANK.items() if rank >= ROLE_RANK[minimum]]
    return Team.objects.filter(memberships__user=user, memberships__role__in=roles)


def visible_teams(user: AnyUser | None) -> QuerySet[Team]:
    return teams_with_role(user, Role.VIEWER)


def _team_filter(user: AnyUser | None, team_path: str) -> Q | None:
    """Return a filter on `team_path`, None for superusers (no filter)."""
    if is_superuser(user):
        return None
    if not _is_member_candidate(user):
        return Q(pk__in=[])
    return Q(**{f"{team_path}__memberships__user": user})


def _scoped(queryset: QuerySet, user: AnyUser | None, team_path: str) -> QuerySet:
    condition = _team_filter(user, team_path)
    if condition is None:
        return queryset
    # One membership per team and user, so the join adds no duplicate rows.
    return queryset.filter(condition)


def visible_models(user: AnyUser | None) -> QuerySet[InferenceModel]:
    return _scoped(InferenceModel.objects.all(), user, "team")


def visible_variants(user: AnyUser | None) -> QuerySet[Variant]:
    return _scoped(Variant.objects.all(), user, "model__team")


def visible_actions(user: AnyUser | None) -> QuerySet[ScaleAction]:
    return _scoped(ScaleAction.objects.all(), user, "variant__model__team")


def visible_decisions(user: AnyUser | None) -> QuerySet[Decision]:
    return _scoped(Decision.objects.all(), user, "variant__model__team")


def visible_samples(user: AnyUser | None) -> QuerySet[MetricSample]:
    return _scoped(MetricSample.objects.all(), user, "variant__model__team")


def visible_cycles(user: AnyUser | None) -> QuerySet[ControlCycle]:
    """Return the cycles any signed-in user may list.

    A cycle covers every team. Its decisions are scoped separately, and the
    API shows raw inputs, outputs and errors to superusers only, because
    they name other teams' variants and pods.
    """
    if not _is_member_candidate(user):
        return ControlCycle.objects.none()
    return ControlCycle.objects.all()


def visible_audit(user: AnyUser | None) -> QuerySet[AuditLog]:
    """Return audit rows about the user's teams' actions, variants and models.

    Rows whose actor is the user are included too.
    """
    if is_superuser(user):
        return AuditLog.objects.all()
    if not _is_member_candidate(user):
        return AuditLog.objects.none()
    action_ids = (
        visible_actions(user).annotate(key=Cast("pk", CharField())).values("key")
    )
    variant_ids = (
        visible_variants(user).annotate(key=Cast("pk", CharField())).values("key")
    )
    model_ids = visible_models(user).annotate(key=Cast("pk", CharField())).values("key")
    # NOTE: rows about a deleted variant or model match no visible id, so only
    # their actor and superusers see them.
    return AuditLog.objects.filter(
        Q(object_type="scale_action", object_id__in=action_ids)
        | Q(object_type="variant", object_id__in=variant_ids)
        | Q(object_type="inference_model", object_id__in=model_ids)
        | Q(actor=user)
    )
