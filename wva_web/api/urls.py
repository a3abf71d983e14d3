"""Routes of the REST API, its OpenAPI schema and the schema browser."""

from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.routers import DefaultRouter

from wva_web.api import views

router = DefaultRouter()
router.register("teams", views.TeamViewSet, basename="team")
router.register("accelerators", views.AcceleratorViewSet, basename="accelerator")
router.register("service-classes", views.ServiceClassViewSet, basename="service-class")
router.register("models", views.InferenceModelViewSet, basename="model")
router.register("variants", views.VariantViewSet, basename="variant")
router.register("metric-samples", views.MetricSampleViewSet, basename="metric-sample")
router.register("cycles", views.ControlCycleViewSet, basename="cycle")
router.register("decisions", views.DecisionViewSet, basename="decision")
router.register("scale-actions", views.ScaleActionViewSet, basename="scale-action")
router.register("audit-log", views.AuditLogViewSet, basename="audit-log")

urlpatterns: list[URLPattern | URLResolver] = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # NOTE: Redoc loads its script from a CDN, so the page needs internet
    # access in the browser. The schema itself and the browsable API do not.
    path("docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
]
