"""Limits of policy comparison runs, from Django settings or the environment.

A setting of the same name in `wva_web.settings` wins. Without one, the
environment variable is read, and without that, the default below applies.

| name | default | meaning |
| --- | --- | --- |
| `WVA_COMPARE_MAX_RUNNING` | 1 | runs that simulate at the same time |
| `WVA_COMPARE_MAX_QUEUED` | 4 | runs that may wait for a free slot |
| `WVA_COMPARE_MAX_SCALE` | 10 | largest load scale factor |
| `WVA_COMPARE_MAX_DURATION_S` | 3600 | longest trace slice, in seconds |
| `WVA_COMPARE_TIME_LIMIT_S` | 1800 | soft time limit of one run, in seconds |
| `WVA_COMPARE_MAX_PLOT_BYTES` | 5000000 | largest size of one run's plots, in bytes |

Plots are written to a temporary folder (under `TMPDIR`, else `/tmp`) and
stored in the database, so the web servers need no shared disk.
"""

from __future__ import annotations

import environ
from django.conf import settings

env = environ.Env()

# Seconds between the soft time limit, which lets a run record its error, and
# the hard limit, which kills the worker process.
HARD_LIMIT_MARGIN_S = 60.0
# Celery queue of the comparison task, named in CELERY_TASK_ROUTES of the
# settings. `make run` starts a worker for it.
QUEUE = "comparisons"


def max_running() -> int:
    return max(1, _int("WVA_COMPARE_MAX_RUNNING", 1))


def max_queued() -> int:
    return max(0, _int("WVA_COMPARE_MAX_QUEUED", 4))


def max_scale() -> float:
    return _float("WVA_COMPARE_MAX_SCALE", 10.0)


def max_duration_s() -> float:
    return _float("WVA_COMPARE_MAX_DURATION_S", 3600.0)


def soft_time_limit_s() -> float:
    return _float("WVA_COMPARE_TIME_LIMIT_S", 1800.0)


def hard_time_limit_s() -> float:
    return soft_time_limit_s() + HARD_LIMIT_MARGIN_S


def queue_deadline_s() -> float:
    """Return how long a queued run may wait: every run ahead of it at its limit."""
    return hard_time_limit_s() * (1 + max_queued())


def max_plot_bytes() -> int:
    """Return the byte limit of one run's stored plots, UTF-8 encoded.

    The four plots of `python -m fleetsim compare --trace azure-conv --scale 10
    --duration 3600` (six policies, one hour) take 262 kB, so the default
    leaves room for larger fleets.
    """
    return max(0, _int("WVA_COMPARE_MAX_PLOT_BYTES", 5_000_000))


def _int(name: str, default: int) -> int:
    value = getattr(settings, name, None)
    return int(value) if value is not None else env.int(name, default=default)


def _float(name: str, default: float) -> float:
    value = getattr(settings, name, None)
    return float(value) if value is not None else env.float(name, default=default)
