"""Celery task of comparison runs, on the queue of its own (`comparisons`).

`make run` starts a worker for that queue with one process (the `compare`
line of the Procfile), and so does the Deployment `wva-compare-worker` in
`deploy/kubernetes/`, so a long simulation never holds up the worker of the
control cycle. When such a worker starts, it fails the runs that it left
running before a restart.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from celery import Task, shared_task
from celery.exceptions import MaxRetriesExceededError
from celery.signals import worker_ready
from django.db import DatabaseError, connection

from wva_web.simulate import conf, runs
from wva_web.simulate.models import RunStatus

logger = logging.getLogger(__name__)

# Seconds between two tries of a queued run to take a free slot.
SLOT_RETRY_S = 15
SLOT_MAX_RETRIES = math.ceil(conf.queue_deadline_s() / SLOT_RETRY_S)


@shared_task(
    name="wva.run_comparison",
    bind=True,
    ignore_result=True,
    max_retries=SLOT_MAX_RETRIES,
    soft_time_limit=conf.soft_time_limit_s(),
    time_limit=conf.hard_time_limit_s(),
    # Acknowledge on receipt: a run whose worker dies is failed later by
    # `fail_lost_runs`, and never simulated a second time.
    acks_late=False,
)
def run_comparison_task(self: Task, run_id: int) -> str:
    """Run one queued comparison; return what happened to it.

    When every slot is busy the task retries every 15 s until the run's
    queue deadline, after which the run fails.
    """
    eager = bool(self.request.is_eager)
    hostname = "" if eager else str(self.request.hostname or "")
    outcome = runs.execute_run(run_id, can_wait=not eager, hostname=hostname)
    if outcome is not runs.Outcome.WAITING:
        return outcome.value
    try:
        raise self.retry(countdown=SLOT_RETRY_S)
    except MaxRetriesExceededError:
        error = f"no free slot within {conf.queue_deadline_s():g} s"
        runs.fail_run(run_id, error, RunStatus.QUEUED)
        logger.error("comparison run %s failed: %s", run_id, error)
        return runs.Outcome.FINISHED.value


@worker_ready.connect
def fail_runs_left_by_restart(sender: Any, **kwargs: Any) -> None:
    """Fail the runs this worker left running, if it consumes the comparison queue.

    Celery sends `worker_ready` once per worker process, with the worker's
    consumer as sender, before the worker takes its first task. The handler
    closes the database connection it opened, because in a prefork worker
    it runs in the main process, where no task ends to close it.
    """
    hostname = str(getattr(sender, "hostname", "") or "")
    if conf.QUEUE not in consumed_queues(sender):
        return
    try:
        runs.fail_runs_of_worker(hostname)
    except DatabaseError as exc:
        logger.error(
            "worker %s could not fail the comparison runs it left running: %s",
            hostname,
            exc,
        )
    finally:
        connection.close()


def consumed_queues(consumer: Any) -> set[str]:
    """Return the names of the queues that a worker's consumer reads."""
    app = getattr(consumer, "app", None)
    if app is None:
        return set()
    return set(app.amqp.queues.consume_from or {})
