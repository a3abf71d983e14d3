"""Permission classes of the REST API.

Reads need a signed-in user, and querysets are already scoped to the user's
teams (`wva_web.catalog.access`). Writes need the operator role: in the
object's team for models and variants, in any team for the global
catalogue (accelerators and service classes), which every team shares.
Decisions on scale actions are checked in the action functions.
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
