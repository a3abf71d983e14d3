"""Routes of the console pages."""

from django.urls import URLPattern, path

from wva_web.dashboard import views

app_name = "dashboard"

urlpatterns: list[URLPattern] = [
    path("", views.overview, name="overview"),
    path("live.json", views.live_json, name="live"),
    path("variants/", views.variant_list, name="variants"),
    path("variants/<int:pk>/", views.variant_detail, name="variant-detail"),
    path("variants/<int:pk>/scale/", views.variant_scale, name="variant-scale"),
    path("actions/", views.action_list, name="actions"),
    path("actions.csv", views.actions_csv, name="actions-csv"),
    path("actions/<int:pk>/approve/", views.action_approve, name="action-approve"),
    path("actions/<int:pk>/reject/", views.action_reject, name="action-reject"),
    path("actions/<int:pk>/override/", views.action_override, name="action-override"),
    path("audit/", views.audit_list, name="audit"),
    path("cycles/", views.cycle_list, name="cycles"),
    path("cycles/<int:pk>/", views.cycle_detail, name="cycle-detail"),
    path("vendor/plotly.min.js", views.plotly_js, name="plotly-js"),
    path("favicon.ico", views.favicon, name="favicon"),
]
