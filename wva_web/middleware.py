"""Login requirement for every page but the login page.

The API under /api/ authenticates inside DRF (token or session) and answers
401 or 403 instead of redirecting; /metrics is for Prometheus scrapes.
"""

from collections.abc import Callable
from typing import Any

from django.conf import settings
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


class MetricsHostMiddleware:
    """Accept any Host header on /metrics.

    Prometheus scrapes pods by IP (`Host: 10.244.1.7:8000`), which no list
    of allowed hosts can name in advance. Django's host check protects URLs
    built from the Host header, and /metrics builds none, so its requests get
    the first allowed host before any other middleware reads the header.
    """

    PATH = "/metrics"

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.rstrip("/") == self.PATH:
            request.META["HTTP_HOST"] = canonical_host()
        return self.get_response(request)


def canonical_host() -> str:
    """Return the first allowed host that is a plain name, else "localhost"."""
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return host
    return "localhost"
