"""Action functions of comparison runs: start, execute, record progress, fail.

Every status change is a conditional UPDATE filtered on the run's id and its
expected status, so a task delivered twice, or a run declared lost while
its worker still writes, changes nothing. At most `WVA_COMPARE_MAX_RUNNING`
runs simulate at once: each holds one of that many named leases
(`wva_web.control.lock`), whose expiry outlives the task's hard time limit.
"""

from __future__ import annotations

import enum
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from fleetsim.compare import DEFAULT_FLEET, CompareOptions, run_comparison
from fleetsim.plots import write_plots
from wva_web.catalog import access
from wva_web.catalog.models import Role
from wva_web.control import lock
from wva_web.control.models import AuditLog
from wva_web.simulate import conf
from wva_web.simulate.models import (
    ComparisonPlot,
    ComparisonRun,
    ComparisonRunQuerySet,
    RunStatus,
)
from wva_web.simulate.options import ComparisonOptions, fleet_path

logger = logging.getLogger(__name__)

# Minimum seconds between two progress writes of one run.
PROGRESS_INTERVAL_S = 1.0
PROGRESS_MESSAGE_MAX = 200
SLOT_PREFIX = "comparison-slot-"


class RunError(Exception):
    """A comparison run that cannot be started. The message gives the reason."""


class RunForbidden(RunError):
    pass


class RunLimitReached(RunError):
    pass


class Outcome(enum.Enum):
    """Outcome of `execute_run` for one queued run."""

    SKIPPED = "skipped"
    WAITING = "waiting"
    FINISHED = "finished"


def can_start(user: Any) -> bool:
    return access.has_role_anywhere(user, Role.OPERATOR)


def format_run_count(count: int, kind: str = "") -> str:
    """Format a count of runs: "1 comparison run", "2 lost comparison runs"."""
    noun = "comparison run" if count == 1 else "comparison runs"
    return f"{count} {kind} {noun}" if kind else f"{count} {noun}"


def _is_are(count: int) -> str:
    return "is" if count == 1 else "are"


def visible_runs(user: Any) -> ComparisonRunQuerySet:
    """Return the runs a user may see: all of them, for any signed-in user.

    A run simulates a public trace on a fleet file of `data/`, so it
    contains no team's data.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return ComparisonRun.objects.none()
    return ComparisonRun.objects.all()


def start_run(user: Any, options: ComparisonOptions) -> ComparisonRun:
    """Queue a comparison run for `user`, write its audit row and send its task.

    Raises `RunForbidden` without the operator role in some team, and
    `RunLimitReached` when the running and waiting runs fill every slot and
    the queue. The task is sent after the transaction commits.
    """
    if not can_start(user):
        raise RunForbidden("starting a comparison needs the operator role in a team")
    fail_lost_runs()
    limit = conf.max_running() + conf.max_queued()
    now = timezone.now()
    with transaction.atomic():
        # NOTE: on PostgreSQL two requests at the same instant can both pass
        # this count, so the queue may exceed its limit by one. The slot
        # leases still bound the runs that simulate at once.
        active = ComparisonRun.objects.active().count()
        if active >= limit:
            raise RunLimitReached(
                f"{format_run_count(active)} {_is_are(active)} already queued or "
                f"running and the limit is {limit}: wait for one to finish"
            )
        run = ComparisonRun.objects.create(
            created_by=user,
            created_at=now,
            updated_at=now,
            options=options.to_json(),
            progress_message="waiting for a worker",
        )
        AuditLog.objects.create(
            at=now,
            actor=user,
            verb="start",
            object_type="comparison_run",
            object_id=str(run.pk),
            after=run.options,
        )
        transaction.on_commit(lambda: enqueue(run.pk))
    logger.info(
        "comparison run %s queued by %s: %s", run.pk, user.get_username(), run.options
    )
    return run


def enqueue(run_id: int) -> None:
    """Send the run's task to the comparison queue; fail the run if that fails."""
    from wva_web.simulate.tasks import run_comparison_task

    try:
        run_comparison_task.apply_async(args=[run_id])
    except OperationalError as exc:
        logger.error("sending the task of comparison run %s failed: %s", run_id, exc)
        fail_run(
            run_id, f"sending the task to the broker failed: {exc}", RunStatus.QUEUED
        )


def fail_lost_runs() -> int:
    """Fail runs whose worker is gone, and queued runs no worker took in time.

    A running run is lost once its start is older than the task's hard time
    limit plus the margin of the slot lease. Returns how many runs failed.
    """
    now = timezone.now()
    lost_after = conf.hard_time_limit_s() + conf.HARD_LIMIT_MARGIN_S
    lost = ComparisonRun.objects.filter(
        status=RunStatus.RUNNING, started_at__lt=now - timedelta(seconds=lost_after)
    ).update(
        status=RunStatus.FAILED,
        finished_at=now,
        updated_at=now,
        error=(
            f"the worker stopped without a result: the run passed its time limit "
            f"of {conf.hard_time_limit_s():g} s or the worker was restarted"
        ),
    )
    deadline = conf.queue_deadline_s()
    stale = ComparisonRun.objects.filter(
        status=RunStatus.QUEUED, created_at__lt=now - timedelta(seconds=deadline)
    ).update(
        status=RunStatus.FAILED,
        finished_at=now,
        updated_at=now,
        error=(
            f"no worker started the run within {deadline:g} s: check that a "
            f"Celery worker consumes the {conf.QUEUE!r} queue"
        ),
    )
    if lost or stale:
        logger.warning(
            "failed %s and %s",
            format_run_count(lost, "lost"),
            format_run_count(stale, "never-started"),
        )
    return lost + stale


def fail_runs_of_worker(hostname: str) -> int:
    """Fail the runs that a restarted worker named `hostname` left running.

    A worker calls this once when it starts, before it takes any task, so a
    run still marked running on its node name lost its process. Two live
    workers with one node name would fail each other's runs, so each needs
    its own name (Celery warns about duplicates). Returns how many failed.
    """
    if not hostname:
        return 0
    now = timezone.now()
    failed = ComparisonRun.objects.filter(
        status=RunStatus.RUNNING, worker_hostname=hostname
    ).update(
        status=RunStatus.FAILED,
        finished_at=now,
        updated_at=now,
        error=f"worker {hostname} restarted while the run was in progress",
    )
    if failed:
        logger.warning(
            "failed %s left running by the restart of worker %s",
            format_run_count(failed),
            hostname,
        )
    return failed


def fail_run(run_id: int, error: str, expected: RunStatus) -> bool:
    """Mark a run failed with `error` if it still has status `expected`."""
    now = timezone.now()
    changed = ComparisonRun.objects.filter(pk=run_id, status=expected).update(
        status=RunStatus.FAILED, error=error, finished_at=now, updated_at=now
    )
    return changed == 1


class ProgressRecorder:
    """Progress callback that writes to the run's row at most once per `interval_s`.

    The final call (fraction 1) is always written. Calls after the run left
    the running status change nothing.
    """

    def __init__(
        self,
        run_id: int,
        interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.interval_s = interval_s
        self.clock = clock
        self.last_write: float | None = None
        self.writes = 0

    def __call__(self, fraction: float, message: str = "") -> None:
        fraction = _clamp_fraction(fraction)
        now = self.clock()
        due = self.last_write is None or now - self.last_write >= self.interval_s
        if not due and fraction < 1.0:
            return
        self.last_write = now
        self.writes += 1
        ComparisonRun.objects.filter(pk=self.run_id, status=RunStatus.RUNNING).update(
            progress=fraction,
            progress_message=str(message)[:PROGRESS_MESSAGE_MAX],
            updated_at=timezone.now(),
        )


def _clamp_fraction(fraction: float) -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(value):
        return 0.0
    return min(1.0, max(0.0, value))


def execute_run(run_id: int, can_wait: bool = True, hostname: str = "") -> Outcome:
    """Run one queued comparison in a free slot and store its result or error.

    Returns WAITING when every slot is taken and `can_wait` is set (the task
    then retries later); without `can_wait` the run fails instead.
    `hostname` is the Celery node name of the worker, stored on the run so
    that the worker's restart can fail it (`fail_runs_of_worker`).
    """
    fail_lost_runs()
    run = ComparisonRun.objects.filter(pk=run_id).first()
    if run is None or run.status != RunStatus.QUEUED:
        logger.info(
            "comparison run %s skipped: it is %s",
            run_id,
            "missing" if run is None else run.status,
        )
        return Outcome.SKIPPED
    holder = lock.new_holder()
    slot = _take_slot(holder)
    if slot is None:
        return _no_slot(run_id, can_wait)
    try:
        now = timezone.now()
        claimed = ComparisonRun.objects.filter(
            pk=run_id, status=RunStatus.QUEUED
        ).update(
            status=RunStatus.RUNNING,
            started_at=now,
            updated_at=now,
            progress=0.0,
            progress_message="starting",
            worker_hostname=hostname,
        )
        if claimed != 1:
            return Outcome.SKIPPED
        logger.info(
            "comparison run %s started in %s on worker %s",
            run_id,
            slot,
            hostname or "(none)",
        )
        _simulate(run_id, run.options)
    finally:
        lock.release(holder, slot)
    return Outcome.FINISHED


def _take_slot(holder: str) -> str | None:
    ttl = conf.hard_time_limit_s() + conf.HARD_LIMIT_MARGIN_S
    for index in range(conf.max_running()):
        name = f"{SLOT_PREFIX}{index}"
        if lock.acquire(holder, name, ttl_s=ttl):
            return name
    return None


def _no_slot(run_id: int, can_wait: bool) -> Outcome:
    busy = conf.max_running()
    if can_wait:
        ComparisonRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            progress_message=f"waiting for a free slot: {busy} of {busy} running",
            updated_at=timezone.now(),
        )
        return Outcome.WAITING
    error = (
        f"no free slot: {format_run_count(busy)} {_is_are(busy)} running and the "
        f"limit is {busy}"
    )
    fail_run(run_id, error, RunStatus.QUEUED)
    logger.warning("comparison run %s failed: %s", run_id, error)
    return Outcome.FINISHED


def _simulate(run_id: int, options: Mapping[str, Any]) -> None:
    """Call fleetsim, then store the result and the plots, or the error."""
    recorder = ProgressRecorder(run_id)
    try:
        result = run_comparison(fleetsim_options(options), progress=recorder)
    except SoftTimeLimitExceeded:
        error = f"timed out after the time limit of {conf.soft_time_limit_s():g} s"
        logger.error("comparison run %s failed: %s", run_id, error)
        fail_run(run_id, error, RunStatus.RUNNING)
        return
    except Exception as exc:
        logger.exception("comparison run %s failed", run_id)
        fail_run(run_id, f"{type(exc).__name__}: {exc}", RunStatus.RUNNING)
        return
    plots, plot_error = _render_plots(run_id, result)
    if not plot_error:
        plots, plot_error = limit_plot_size(plots, conf.max_plot_bytes())
        if plot_error:
            logger.warning("comparison run %s: %s", run_id, plot_error)
    _store_success(run_id, plain_json(result), plots, plot_error)


def _store_success(
    run_id: int, result: Any, plots: list[tuple[str, str]], error: str
) -> None:
    """Mark the run succeeded and insert its plots, both or neither.

    A run that left the running status meanwhile (declared lost, say) keeps
    that status and gets no plots.
    """
    now = timezone.now()
    with transaction.atomic():
        changed = ComparisonRun.objects.filter(
            pk=run_id, status=RunStatus.RUNNING
        ).update(
            status=RunStatus.SUCCEEDED,
            result=result,
            error=error,
            progress=1.0,
            progress_message="finished",
            finished_at=now,
            updated_at=now,
        )
        if changed != 1:
            logger.warning(
                "comparison run %s finished but is no longer running; "
                "its result is dropped",
                run_id,
            )
            return
        ComparisonPlot.objects.bulk_create(
            ComparisonPlot(
                run_id=run_id, name=name, html=html, size_bytes=_utf8_size(html)
            )
            for name, html in plots
        )
    logger.info("comparison run %s succeeded with %d plots", run_id, len(plots))


def fleetsim_options(options: Mapping[str, Any]) -> CompareOptions:
    """Translate stored options into the options of `run_comparison`."""
    fleet = fleet_path(str(options.get("fleet") or ""))
    return CompareOptions(
        trace=str(options["trace"]),
        scale=float(options["scale"]),
        scale_mode=str(options["scale_mode"]),
        fleet=DEFAULT_FLEET if fleet is None else fleet,
        policies=tuple(str(name) for name in options["policies"]),
        seed=int(options["seed"]),
        duration_s=float(options["duration_s"]),
    )


def _render_plots(run_id: int, result: Any) -> tuple[list[tuple[str, str]], str]:
    """Render the run's plots; return (file name, HTML) pairs and any error.

    fleetsim writes the files into a temporary folder that is removed at
    once. A plot failure leaves the figures of the result intact, so it is
    stored as the run's error text, and the run still succeeds.
    """
    try:
        with tempfile.TemporaryDirectory(prefix=f"wva-compare-{run_id}-") as folder:
            directory = Path(folder)
            plots = [
                (path.name, path.read_text(encoding="utf-8"))
                for path in map(Path, write_plots(result, directory))
                if path.suffix == ".html" and path.parent == directory
            ]
    except Exception as exc:
        logger.exception("writing the plots of comparison run %s failed", run_id)
        return [], f"plots not written: {type(exc).__name__}: {exc}"
    return plots, ""


def limit_plot_size(
    plots: list[tuple[str, str]], max_bytes: int
) -> tuple[list[tuple[str, str]], str]:
    """Keep plots in order while their total UTF-8 size stays within `max_bytes`.

    Returns the plots kept and, when some were left out, a message that
    names them, their sizes and the limit.
    """
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    total = 0
    for name, html in plots:
        size = _utf8_size(html)
        if total + size > max_bytes:
            dropped.append(f"{name} ({_size_text(size)})")
            continue
        kept.append((name, html))
        total += size
    if not dropped:
        return kept, ""
    message = (
        f"plots not stored: {', '.join(dropped)} would bring the run's plots past "
        f"the limit of {_size_text(max_bytes)} (WVA_COMPARE_MAX_PLOT_BYTES); "
        f"replay a shorter trace slice or fewer policies, or raise the limit"
    )
    return kept, message


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def _size_text(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1e6:.2f} MB"
    if size >= 1_000:
        return f"{size / 1e3:.1f} kB"
    return f"{size} bytes"


def plain_json(value: Any) -> Any:
    """Return `value` as plain JSON data: non-finite floats become None."""
    if isinstance(value, Mapping):
        return {str(key): plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return plain_json(value.tolist())
    if hasattr(value, "item"):
        return plain_json(value.item())
    return str(value)
