"""Single-cycle lease: at most one control cycle runs at a time.

The lease is a `CycleLock` row taken by one conditional UPDATE that
matches only a free or expired row, so two workers racing for it see one
updated row between them, on SQLite and PostgreSQL alike. The lease
expires after WVA_CYCLE_LOCK_S, which is longer than the cycle's hard time
limit, so a killed cycle frees it without a second cycle overlapping a
live one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from wva_web.control.models import CycleLock

logger = logging.getLogger(__name__)

CYCLE_LOCK = "control-cycle"


def acquire(holder: str, name: str = CYCLE_LOCK, ttl_s: float | None = None) -> bool:
    """Take the lease for `holder`; return False when someone else holds it."""
    ttl = settings.WVA_CYCLE_LOCK_S if ttl_s is None else ttl_s
    now = timezone.now()
    CycleLock.objects.bulk_create([CycleLock(name=name)], ignore_conflicts=True)
    free = Q(expires_at__isnull=True) | Q(expires_at__lte=now)
    taken = (
        CycleLock.objects.filter(name=name)
        .filter(free)
        .update(holder=holder, expires_at=now + timedelta(seconds=ttl))
    )
    return taken == 1


def release(holder: str, name: str = CYCLE_LOCK) -> bool:
    """Free the lease if `holder` still has it; return whether it did."""
    freed = CycleLock.objects.filter(name=name, holder=holder).update(
        holder="", expires_at=None
    )
    if not freed:
        logger.warning("lock %s was no longer held by %s at release", name, holder)
    return freed == 1


def new_holder() -> str:
    """Return a holder id: the console instance name and a random suffix."""
    return f"{settings.WVA_INSTANCE}:{uuid.uuid4().hex[:12]}"


@contextmanager
def cycle_lock(name: str = CYCLE_LOCK) -> Iterator[str | None]:
    """Hold the lease for the block; yield the holder id, or None when busy."""
    holder = new_holder()
    if not acquire(holder, name):
        yield None
        return
    try:
        yield holder
    finally:
        release(holder, name)
