"""Routes of the policy comparison pages, under /compare/."""

from django.urls import URLPattern, path

from wva_web.simulate import views

app_name = "simulate"

urlpatterns: list[URLPattern] = [
    path("", views.run_list, name="runs"),
    path("<int:pk>/", views.run_detail, name="run-detail"),
    path("<int:pk>/progress.json", views.run_progress, name="run-progress"),
    path("<int:pk>/results/", views.run_results, name="run-results"),
    path("<int:pk>/plots/<str:name>", views.run_plot, name="run-plot"),
]
