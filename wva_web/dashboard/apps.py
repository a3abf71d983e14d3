from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "wva_web.dashboard"
