"""WVA console: Django project package with its apps inside."""

from wva_web.celery import app as celery_app

__all__ = ["celery_app"]
