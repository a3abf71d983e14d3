"""Permission classes of the REST API.

Reads need a signed-in user, and querysets are already scoped to the user's
teams (`wva_web.catalog.access`). Writes need the operator role: in the
object's team for models and variants, in any team for the global
catalogue (accelerators and service classes), which every team shares.
Decisions on scale actions are checked by role here, before the body is
validated, and again in full (four-eyes included) in the action functions.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from wva_web.catalog import access
from wva_web.catalog.models import Role


class GlobalCatalogueWrite(BasePermission):
    """Operators of any team and superusers edit the shared catalogue."""

    message = "editing the shared catalogue needs the operator role in some team"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return access.has_role_anywhere(request.user, Role.OPERATOR)


class TeamCatalogueWrite(BasePermission):
    """Operators edit their own team's models and variants."""

    message = "this change needs the operator role in the object's team"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if view.kwargs.get("pk") is not None:
            # On detail routes the scoped lookup returns 404 for another team's
            # object before the object check below returns 403.
            return True
        return access.has_role_anywhere(request.user, Role.OPERATOR)

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return access.has_role(request.user, obj.team.pk, Role.OPERATOR)


class ScaleActionRole(BasePermission):
    """Role checks on scale actions that run before the request body is validated.

    A user without the role gets 403 whatever the body contains, so a viewer
    cannot learn the validation rules by probing. Creating needs the operator
    role (in the named variant's team when the body names a visible variant).
    Approving and overriding need the approver role in the action's team, and
    rejecting needs it too unless the user requested the action. The action
    functions in `wva_web.control.actions` check again, including four-eyes.
    """

    message = "this change of a scale action needs a higher role in its team"

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS or view.kwargs.get("pk") is not None:
            return True
        if not access.has_role_anywhere(request.user, Role.OPERATOR):
            self.message = "requesting a scale action needs the operator role"
            return False
        team_id = named_variant_team(request)
        if team_id is None:
            return True
        self.message = "requesting a scale action needs the operator role in its team"
        return access.has_role(request.user, team_id, Role.OPERATOR)

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        team = obj.variant.model.team
        if access.has_role(request.user, team.pk, Role.APPROVER):
            return True
        verb = getattr(view, "action", "")
        own = obj.requested_by_id is not None and obj.requested_by_id == request.user.pk
        if verb == "reject" and own:
            return True
        self.message = f"{verb} needs the approver role in team {team.name}"
        return False


def named_variant_team(request: Request) -> int | None:
    """Return the team id of the visible variant the body names, if any."""
    data = request.data
    raw = data.get("variant") if hasattr(data, "get") else None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    if isinstance(raw, str) and not raw.isdigit():
        return None
    return (
        access.visible_variants(request.user)
        .filter(pk=int(raw))
        .values_list("model__team_id", flat=True)
        .first()
    )
