"""The beat schedule of the control cycle, stored by django-celery-beat."""

from __future__ import annotations

import logging

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

logger = logging.getLogger(__name__)

CYCLE_TASK = "wva.run_control_cycle"
CYCLE_ENTRY = "wva control cycle"


def ensure_cycle_schedule(period_s: float | None = None) -> PeriodicTask:
    """Create or update the periodic entry that starts a cycle every period.

    The entry expires after one period, so a backlog of missed runs is
    dropped instead of piling up behind a slow worker.
    """
    period = max(
        1, round(period_s if period_s is not None else settings.WVA_CYCLE_PERIOD_S)
    )
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=period, period=IntervalSchedule.SECONDS
    )
    task, created = PeriodicTask.objects.update_or_create(
        name=CYCLE_ENTRY,
        defaults={
            "task": CYCLE_TASK,
            "interval": interval,
            "expire_seconds": period,
            "enabled": True,
        },
    )
    logger.info(
        "%s the beat entry %r: every %s s",
        "created" if created else "updated",
        CYCLE_ENTRY,
        period,
    )
    return task
