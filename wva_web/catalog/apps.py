from django.apps import AppConfig
from django.db.models.signals import pre_delete


class CatalogConfig(AppConfig):
    name = "wva_web.catalog"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from wva_web.catalog.deletion import reject_delete_with_history
        from wva_web.catalog.models import Variant

        pre_delete.connect(
            reject_delete_with_history,
            sender=Variant,
            dispatch_uid="catalog.reject_delete_with_history",
        )
