"""Routes of the REST API, its OpenAPI schema, the schema browser and tokens."""

from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import DefaultRouter

from wva_web.api import views
from wva_web.api.docs import ApiDocsView
from wva_web.simulate.api import ComparisonRunViewSet

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
router.register("comparisons", ComparisonRunViewSet, basename="comparison")

urlpatterns: list[URLPattern | URLResolver] = [
    # The schema and its browser need a signed-in user, like every endpoint.
    path(
        "schema/",
        SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]),
        name="api-schema",
    ),
    # Redoc's script comes from drf-spectacular-sidecar's static files. A
    # signed-out browser is sent to the login page, an API client gets 401.
    path("docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    # POST username and password (form or JSON) to get the user's API token.
    path("auth/token/", obtain_auth_token, name="api-token"),
    *router.urls,
]
