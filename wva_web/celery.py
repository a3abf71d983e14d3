"""Celery application of the console.

The broker is Redis when `REDIS_URL` is set. Without it, kombu's filesystem
transport under `var/broker/` lets `make run` work with no server at all.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wva_web.settings")

app = Celery("wva_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
