"""A restarted comparison worker fails the runs it left running.

Runs store the Celery node name of the worker that started them. When a
worker that consumes the `comparisons` queue starts, Celery sends
`worker_ready` and the console fails the running runs of that node name.
The thread tests run a real Celery worker on an in-memory broker. The last
test starts real `celery` processes on a Redis server, kills one in the
middle of a run and starts it again, so it needs PostgreSQL, which those
processes share with the test.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, signals
from celery.contrib.testing.worker import TestWorkController, start_worker
from django.db import connection
from django.utils import timezone

from tests.conftest import skip_or_fail
from tests.integrations.test_celery_redis import (
    START_TIMEOUT_S,
    CeleryProcess,
    RedisServer,
    shared_database_url,
    wait_until,
)
from tests.ports import free_port
from tests.simulate.conftest import People, make_run
from wva_web.celery import app as celery_app
from wva_web.simulate import conf, runs
from wva_web.simulate.models import ComparisonRun, RunStatus
from wva_web.simulate.options import ComparisonOptions

NODE = "compare@node-a"
OTHER_NODE = "compare@node-b"
# Loopback ports of the Redis server of the process test.
PORTS = range(18800, 18850)


def running_on(people: People, hostname: str) -> ComparisonRun:
    return make_run(
        people.users["operator"],
        status=RunStatus.RUNNING,
        started_at=timezone.now(),
        worker_hostname=hostname,
    )


def test_fail_runs_of_worker_only_that_host(people: People) -> None:
    mine = running_on(people, NODE)
    other = running_on(people, OTHER_NODE)
    queued = make_run(people.users["operator"])
    done = make_run(
        people.users["operator"], status=RunStatus.SUCCEEDED, worker_hostname=NODE
    )
    # when the worker of node-a starts again
    assert runs.fail_runs_of_worker(NODE) == 1
    for run in (mine, other, queued, done):
        run.refresh_from_db()
    # then only its running run failed, with the node name in the message
    assert mine.status == RunStatus.FAILED
    assert mine.error == f"worker {NODE} restarted while the run was in progress"
    assert mine.finished_at is not None
    assert other.status == RunStatus.RUNNING
    assert queued.status == RunStatus.QUEUED
    assert done.status == RunStatus.SUCCEEDED


def test_fail_runs_of_worker_without_name(people: People) -> None:
    run = running_on(people, "")
    assert runs.fail_runs_of_worker("") == 0
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_time_sweep_still_fails_unnamed_lost_run(people: People) -> None:
    long_ago = timezone.now() - dt.timedelta(
        seconds=conf.hard_time_limit_s() + conf.HARD_LIMIT_MARGIN_S + 5
    )
    run = make_run(
        people.users["operator"],
        status=RunStatus.RUNNING,
        started_at=long_ago,
        worker_hostname="compare@gone",
    )
    assert runs.fail_lost_runs() == 1
    run.refresh_from_db()
    assert "the worker stopped without a result" in run.error


class ReadyWorker(TestWorkController):
    """A test worker that sends `worker_ready` as `celery worker` does."""

    def on_consumer_ready(self, consumer: Any) -> None:
        signals.worker_ready.send(sender=consumer)
        super().on_consumer_ready(consumer)


@contextmanager
def worker_thread(
    monkeypatch: pytest.MonkeyPatch, queues: list[str], hostname: str
) -> Iterator[Any]:
    """Run a Celery worker thread on a memory broker until the block ends."""
    monkeypatch.setitem(celery_app.conf, "broker_url", "memory://")
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    # `queues` selects the app's queues for good; restore them afterwards.
    monkeypatch.setattr(celery_app.amqp.queues, "_consume_from", None)
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        queues=queues,
        hostname=hostname,
        WorkController=ReadyWorker,
        shutdown_timeout=30,
    ) as worker:
        yield worker


@pytest.mark.django_db(transaction=True)
def test_comparison_worker_start_fails_its_runs(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = running_on(people, NODE)
    other = running_on(people, OTHER_NODE)
    with worker_thread(monkeypatch, [conf.QUEUE], NODE):
        pass
    mine.refresh_from_db()
    other.refresh_from_db()
    assert mine.status == RunStatus.FAILED
    assert mine.error == f"worker {NODE} restarted while the run was in progress"
    assert other.status == RunStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_other_queue_worker_start_changes_nothing(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a worker of the default queue that happens to have the same name
    run = running_on(people, NODE)
    with worker_thread(monkeypatch, [celery_app.conf.task_default_queue], NODE):
        pass
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        skip_or_fail("needs Debian's redis-server")
    server = RedisServer(binary, free_port(PORTS), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_killed_worker_fails_run_on_restart(
    people: People, redis_server: RedisServer, tmp_path: Path
) -> None:
    if connection.vendor != "postgresql":
        skip_or_fail(
            "needs PostgreSQL: set DATABASE_URL, since the Celery processes "
            "share the test database"
        )
    env = {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": redis_server.url,
        "TMPDIR": str(tmp_path),
    }
    args = ["worker", "--queues", conf.QUEUE, "--pool", "solo"]
    args += ["--hostname", NODE, "--loglevel", "INFO"]
    # given a run long enough (an hour of trace, every policy) to be killed
    options = ComparisonOptions(
        trace="azure-conv",
        scale=10.0,
        scale_mode="superpose",
        policies=("hpa-kv", "hpa-queue", "static-peak", "wva-v1", "wva", "oracle"),
        seed=3,
        duration_s=3600.0,
    )
    run = make_run(people.users["operator"], options=options)
    first = CeleryProcess(args, env, tmp_path / "first.log")
    try:
        first.wait_for_log(rf"{NODE} ready\.", timeout_s=START_TIMEOUT_S)
        sender = Celery("sender", broker=redis_server.url, set_as_current=False)
        try:
            sender.send_task("wva.run_comparison", args=[run.pk], queue=conf.QUEUE)
        finally:
            sender.close()

        def started() -> bool:
            run.refresh_from_db()
            return run.status == RunStatus.RUNNING

        wait_until(started, 60.0, f"comparison run {run.pk} to start")
        # when the worker is killed in the middle of the run
        assert run.worker_hostname == NODE
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()
    time.sleep(0.5)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    # and started again under the same node name
    second = CeleryProcess(args, env, tmp_path / "second.log")
    try:
        second.wait_for_log(rf"{NODE} ready\.", timeout_s=START_TIMEOUT_S)
        run.refresh_from_db()
    finally:
        second.stop()
    # then the run failed at the restart, not half an hour later
    assert run.status == RunStatus.FAILED
    assert run.error == f"worker {NODE} restarted while the run was in progress"
