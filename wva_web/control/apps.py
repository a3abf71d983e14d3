from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "wva_web.control"
    verbose_name = "Control"
