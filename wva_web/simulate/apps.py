from django.apps import AppConfig


class SimulateConfig(AppConfig):
    name = "wva_web.simulate"
    verbose_name = "Policy comparisons"
