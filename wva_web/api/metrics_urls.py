"""Route of /metrics (included from the project's URLconf)."""

from django.urls import URLPattern, path

from wva_web.api.metrics import metrics_view

urlpatterns: list[URLPattern] = [path("", metrics_view, name="metrics")]
