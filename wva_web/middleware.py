"""Login requirement for every page but the login page.

The API under /api/ authenticates inside DRF (token or session) and answers
401 or 403 instead of redirecting; /metrics is for Prometheus scrapes.
"""

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import LoginRequiredMiddleware
from django.http import HttpRequest, HttpResponseBase

EXEMPT_PREFIXES = ("/api/", "/metrics", "/static/", "/healthz")


class ConsoleLoginRequiredMiddleware(LoginRequiredMiddleware):
    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: list[Any],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if request.path.startswith(EXEMPT_PREFIXES):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
