"""The API reference page (Redoc); a signed-out browser goes to the login page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.views import SpectacularRedocView
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


def names_html(request: HttpRequest) -> bool:
    """Tell whether the Accept header names text/html itself, as browsers send it.

    A wildcard such as curl's default "*/*" does not count, so API clients
    keep getting 401.
    """
    header = request.META.get("HTTP_ACCEPT", "")
    media_types = (part.split(";")[0].strip().lower() for part in header.split(","))
    return "text/html" in media_types


class ApiDocsView(SpectacularRedocView):
    permission_classes = [IsAuthenticated]

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # The page has one renderer (HTML). Forcing it lets a signed-out API
        # client that accepts only JSON get 401, not 406.
        return super().perform_content_negotiation(request, force=True)

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        signed_out = isinstance(
            exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed
        )
        if signed_out and names_html(self.request):
            return redirect_to_login(self.request.get_full_path(), settings.LOGIN_URL)
        return super().handle_exception(exc)
