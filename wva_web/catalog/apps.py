from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "wva_web.catalog"
    verbose_name = "Catalogue"
