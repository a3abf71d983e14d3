"""Celery worker and beat processes on a Redis server that the tests restart.

Each test starts its own `redis-server` on a free loopback port in
18500-18599 and real `celery --app wva_web` processes against the test
database and an in-process emulated cluster. The processes share the test
database with this test, so it has to be PostgreSQL: an in-memory SQLite
test database is visible to this process only.

A test holds the cycle lock row with SELECT ... FOR UPDATE to stop a cycle
at a known point: the worker's task has started and waits in its UPDATE of
that row until the test commits.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from fleetsim.emulator import Emulator
from tests.conftest import skip_or_fail
from tests.ports import free_port
from wva_web.catalog.models import Variant
from wva_web.control.lock import CYCLE_LOCK
from wva_web.control.models import ControlCycle, CycleLock, CycleStatus, VariantState
from wva_web.control.schedule import ensure_cycle_schedule

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.emulator,
    pytest.mark.timeout(240),
]

PORTS = range(18500, 18600)
CYCLE_TASK = "wva.run_control_cycle"
# A worker imports Django, NumPy and SciPy at start-up, which can take tens of
# seconds on a CI machine shared with other jobs.
START_TIMEOUT_S = 60.0
TASK_TIMEOUT_S = 60.0
# Control cycle period of the beat test, in seconds.
PERIOD_S = 5.0
SUCCEEDED = re.compile(
    rf"Task {re.escape(CYCLE_TASK)}\[(?P<id>[0-9a-f-]+)\] succeeded in [0-9.e-]+s: "
    r"(?P<result>\S+)"
)
RECEIVED = re.compile(rf"Task {re.escape(CYCLE_TASK)}\[(?P<id>[0-9a-f-]+)\] received")


def wait_until(
    condition: Callable[[], object], timeout_s: float, description: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {description}")


class RedisServer:
    """A `redis-server` on loopback that keeps nothing on disk."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._answers_ping, 10.0, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def _answers_ping(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()


class CeleryProcess:
    """A `celery --app wva_web` worker or beat process with its log in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "--app", "wva_web", *args],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(
        self, pattern: str, count: int = 1, timeout_s: float = 30.0
    ) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"celery exited with {self.process.returncode}:\n{self.log()}"
                )
            return len(re.findall(pattern, self.log())) >= count

        wait_until(seen, timeout_s, f"{count} x {pattern!r} in {self.log_path.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def shared_database_url() -> str:
    """Return a URL of the test database for the Celery processes."""
    params = connection.settings_dict
    user = quote(params["USER"] or "")
    password = quote(params["PASSWORD"] or "")
    auth = ""
    if user:
        auth = f"{user}:{password}@" if password else f"{user}@"
    host = params["HOST"] or "127.0.0.1"
    port = params["PORT"] or 5432
    return f"postgres://{auth}{host}:{port}/{params['NAME']}"


@pytest.fixture
def postgres(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        skip_or_fail(
            "needs PostgreSQL: set DATABASE_URL, since the Celery processes "
            "share the test database"
        )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        skip_or_fail("needs redis-server on PATH (Debian package redis-server)")
    server = RedisServer(str(binary), free_port(PORTS), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def demo(postgres: None, tmp_path: Path) -> Iterator[Emulator]:
    """The demo catalogue, and the emulated cluster 30 s after its start."""
    with Emulator(
        "data/demo_fleet.json",
        tmp_path / "emulator",
        port=0,
        clock="manual",
        compression=8.0,
        startup_delay_s=30.0,
        seed=1,
    ) as emulator:
        emulator.advance(30.0)
        call_command("load_demo", stdout=io.StringIO())
        yield emulator


@pytest.fixture
def start_celery(
    demo: Emulator, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., CeleryProcess]]:
    """Start Celery processes on the test database, Redis and the emulator."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WVA_", "CELERY", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="wva_web.settings",
        DATABASE_URL=shared_database_url(),
        REDIS_URL=redis_server.url,
        WVA_KUBECONFIG=str(demo.kubeconfig_path),
        WVA_INSTANCE="console-1",
        WVA_CYCLE_PERIOD_S=str(PERIOD_S),
        PYTHONUNBUFFERED="1",
    )
    started: list[CeleryProcess] = []

    def start(*args: str) -> CeleryProcess:
        name = args[0] if args[0] == "beat" else args[args.index("--hostname") + 1]
        process = CeleryProcess(list(args), dict(env), tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def start_worker(start: Callable[..., CeleryProcess], name: str) -> CeleryProcess:
    worker = start(
        "worker",
        "--hostname",
        f"{name}@localhost",
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    )
    worker.wait_for_log(rf"{name}@localhost ready", timeout_s=START_TIMEOUT_S)
    return worker


def send_cycles(redis_url: str, count: int) -> list[str]:
    """Queue `count` cycle tasks through a separate Celery client."""
    with Celery("wva-test-client", broker=redis_url) as client:
        return [client.send_task(CYCLE_TASK).id for _ in range(count)]


@contextmanager
def cycle_lock_row_held() -> Iterator[None]:
    """Hold the cycle lock row, so a cycle that starts waits in its UPDATE."""
    CycleLock.objects.get_or_create(name=CYCLE_LOCK)
    with transaction.atomic():
        CycleLock.objects.select_for_update().get(name=CYCLE_LOCK)
        yield


def lock_waiters() -> int:
    """Count sessions of the test database that wait for a row lock."""
    with connection.cursor() as cursor:
        # PostgreSQL keeps one pg_stat_activity snapshot per transaction, and
        # the caller is inside one: drop it to read the sessions' state now.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def results_by_task(*logs: str) -> dict[str, list[str]]:
    """Map each succeeded cycle task id to the results it logged."""
    results: dict[str, list[str]] = {}
    for log in logs:
        for match in SUCCEEDED.finditer(log):
            results.setdefault(match["id"], []).append(match["result"])
    return results


def overlapping_cycles() -> list[tuple[int, int]]:
    """Return pairs of cycle ids whose runs overlap in time."""
    cycles = list(ControlCycle.objects.order_by("started_at"))
    pairs = []
    for previous, current in zip(cycles, cycles[1:], strict=False):
        if previous.finished_at is None or previous.finished_at > current.started_at:
            pairs.append((previous.pk, current.pk))
    return pairs


def test_worker_runs_cycle_end_to_end(start_celery, redis_server):
    # Given a worker on Redis, the test database and the emulated cluster.
    worker = start_worker(start_celery, "w1")
    # When one cycle task is queued.
    (task_id,) = send_cycles(redis_url=redis_server.url, count=1)
    worker.wait_for_log(
        rf"{CYCLE_TASK}\[{task_id}\] succeeded", timeout_s=TASK_TIMEOUT_S
    )
    # Then the worker ran one complete cycle, with every variant's state stored.
    cycle = ControlCycle.objects.get()
    assert cycle.status == CycleStatus.OK
    assert cycle.finished_at is not None
    assert results_by_task(worker.log()) == {task_id: [str(cycle.pk)]}
    assert VariantState.objects.count() == Variant.objects.count()
    assert set(cycle.timings_ms) >= {"collect", "analyse", "store"}


def test_redis_restart_during_cycle(start_celery, redis_server):
    # Given a worker and beat with a 5 s period, and the cycle lock row held.
    period_s = PERIOD_S
    ensure_cycle_schedule(period_s)
    worker = start_worker(start_celery, "w1")
    with cycle_lock_row_held():
        beat = start_celery("beat", "--loglevel", "INFO", "--max-interval", "1")
        worker.wait_for_log(RECEIVED.pattern, timeout_s=START_TIMEOUT_S)
        held_task = RECEIVED.search(worker.log())["id"]
        wait_until(lambda: lock_waiters() >= 1, 30.0, "the cycle to wait for the lock")
        # When Redis restarts while that cycle runs, losing every queued message.
        redis_server.stop()
        redis_server.start()
        back_at = timezone.now()
    # Then the held cycle finishes, and the worker reconnects.
    worker.wait_for_log(rf"{CYCLE_TASK}\[{held_task}\] succeeded", timeout_s=30.0)
    (held_result,) = results_by_task(worker.log())[held_task]
    worker.wait_for_log(r"Connected to redis://", count=2, timeout_s=30.0)

    # Then the next cycle, queued by beat through the new server, finishes
    # within two periods of the restart.
    def next_cycle_finished_at() -> datetime | None:
        return (
            ControlCycle.objects.exclude(pk=int(held_result))
            .filter(started_at__gt=back_at, finished_at__isnull=False)
            .order_by("finished_at")
            .values_list("finished_at", flat=True)
            .first()
        )

    wait_until(next_cycle_finished_at, 6 * period_s, "a cycle after the restart")
    delay_s = (next_cycle_finished_at() - back_at).total_seconds()
    assert delay_s <= 2 * period_s, (
        f"first cycle after the restart finished {delay_s:.1f} s after it"
    )
    # Then no task ran twice and no two cycles overlapped.
    beat.stop()
    worker.stop()
    results = results_by_task(worker.log())
    assert len(results[held_task]) == 1
    assert all(len(task_results) == 1 for task_results in results.values())
    assert overlapping_cycles() == []
    assert not ControlCycle.objects.filter(status=CycleStatus.RUNNING).exists()


def test_two_workers_one_cycle_at_a_time(start_celery, redis_server):
    # Given two workers with different hostnames on the same Redis and database.
    first = start_worker(start_celery, "w1")
    second = start_worker(start_celery, "w2")
    # When each receives a cycle task while the lock row is held, and both
    # then race for the cycle lock.
    with cycle_lock_row_held():
        task_ids = send_cycles(redis_url=redis_server.url, count=2)
        first.wait_for_log(RECEIVED.pattern, timeout_s=TASK_TIMEOUT_S)
        second.wait_for_log(RECEIVED.pattern, timeout_s=TASK_TIMEOUT_S)
        wait_until(lambda: lock_waiters() >= 2, 30.0, "both cycles to wait")
    for task_id in task_ids:
        wait_until(
            lambda task_id=task_id: (
                task_id in results_by_task(first.log(), second.log())
            ),
            TASK_TIMEOUT_S,
            f"task {task_id} to finish",
        )
    # Then one ran a cycle and the other found the lock taken and returned None.
    cycle = ControlCycle.objects.get()
    results = results_by_task(first.log(), second.log())
    assert sorted(result for (result,) in results.values()) == sorted(
        [str(cycle.pk), "None"]
    )
    # When eight more tasks arrive with the lock free.
    more = send_cycles(redis_url=redis_server.url, count=8)
    wait_until(
        lambda: set(more) <= set(results_by_task(first.log(), second.log())),
        2 * TASK_TIMEOUT_S,
        "eight more cycle tasks to finish",
    )
    # Then both workers took tasks, every task ran once, and no two cycles overlap.
    assert len(RECEIVED.findall(first.log())) >= 2
    assert len(RECEIVED.findall(second.log())) >= 2
    results = results_by_task(first.log(), second.log())
    assert all(len(task_results) == 1 for task_results in results.values())
    assert overlapping_cycles() == []
    assert ControlCycle.objects.count() >= 2
