from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "wva_web.api"
