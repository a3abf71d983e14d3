"""URL routes: pages, admin, login, the REST API and /metrics."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include("wva_web.api.urls")),
    path("metrics", include("wva_web.api.metrics_urls")),
    path("compare/", include("wva_web.simulate.urls")),
    path("", include("wva_web.dashboard.urls")),
]
