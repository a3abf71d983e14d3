"""Single-cycle lease, beat schedule and demo set-up commands."""

from __future__ import annotations

import datetime as dt
import io
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django_celery_beat.models import PeriodicTask

from tests.control.fakes import FakeMetrics
from wva_web.catalog.models import Accelerator, Membership, Variant
from wva_web.control import lock
from wva_web.control.cycle import CycleService
from wva_web.control.models import ControlCycle, CycleLock
from wva_web.control.schedule import ensure_cycle_schedule


@pytest.mark.django_db
def test_lock_taken_once():
    # Given one holder has the lease.
    assert lock.acquire("worker-1") is True
    # When a second holder tries, then it is refused.
    assert lock.acquire("worker-2") is False
    # And after release the second holder gets it.
    assert lock.release("worker-1") is True
    assert lock.acquire("worker-2") is True


@pytest.mark.django_db
def test_expired_lock_taken_over(settings):
    # Given a lease that expired a second ago.
    lock.acquire("worker-1")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    CycleLock.objects.filter(name=lock.CYCLE_LOCK).update(expires_at=past)
    # When another holder requests it, then it takes the lease.
    assert lock.acquire("worker-2") is True
    assert CycleLock.objects.get().holder == "worker-2"


@pytest.mark.django_db
def test_lock_outlives_hard_limit(settings):
    # The default lease is longer than the hard time limit of the task.
    assert settings.WVA_CYCLE_LOCK_S > settings.WVA_CYCLE_HARD_LIMIT_S


@pytest.mark.django_db
def test_cycle_skipped_while_lock_held():
    # Given another worker holds the lease.
    lock.acquire("other-worker")
    # When a cycle starts, then it is skipped and no row is written.
    assert CycleService(metrics_source=FakeMetrics(), actuator=object()).run() is None
    assert ControlCycle.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_acquire_one_wins():
    # Given eight threads racing for the lease at the same moment.
    if connection.vendor == "sqlite":
        pytest.skip("in-memory SQLite test databases are not shared between threads")
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def contend(index: int) -> None:
        barrier.wait()
        try:
            results.append(lock.acquire(f"worker-{index}"))
        finally:
            connection.close()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then exactly one thread has it.
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.django_db
def test_schedule_expires_after_one_period(settings):
    # Given a period of 30 s.
    settings.WVA_CYCLE_PERIOD_S = 30.0
    # When the schedule is ensured twice with a changed period.
    ensure_cycle_schedule()
    task = ensure_cycle_schedule(period_s=15)
    # Then one entry exists with the new period and expiry.
    assert PeriodicTask.objects.filter(task="wva.run_control_cycle").count() == 1
    assert task.interval.every == 15
    assert task.expire_seconds == 15


@pytest.mark.django_db
def test_load_demo_idempotent():
    # When the demo is loaded twice.
    call_command("load_demo", stdout=io.StringIO())
    call_command("load_demo", stdout=io.StringIO())
    # Then the variants, budgets and profiles are there once.
    assert Variant.objects.count() == 4
    l4 = Variant.objects.get(name="llama-8b-l4")
    assert (l4.namespace, l4.workload_name, l4.max_replicas) == (
        "llm",
        "llama-8b-l4",
        8,
    )
    assert l4.profile["alpha"] == 67.0
    h100 = Accelerator.objects.get(name="H100-80GB")
    assert h100.usd_per_gpu_hour == 12.29
    assert h100.gpus_available == 2
    assert h100.node_label_value == "NVIDIA-H100-80GB-HBM3"
    assert Accelerator.objects.get(name="H200").gpus_available is None
    assert PeriodicTask.objects.filter(task="wva.run_control_cycle").count() == 1


@pytest.mark.django_db
def test_demo_admin_password_printed_once(monkeypatch):
    # Given no password in the environment.
    monkeypatch.delenv("WVA_ADMIN_PASSWORD", raising=False)
    first, second = io.StringIO(), io.StringIO()
    # When the command runs twice.
    call_command("ensure_demo_admin", stdout=first)
    call_command("ensure_demo_admin", stdout=second)
    # Then the generated password is printed once and works for admin.
    password = first.getvalue().split("(shown once): ", 1)[1].split()[0]
    assert "shown once" in first.getvalue()
    assert password not in second.getvalue()
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser is True
    assert admin.check_password(password) is True
    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {"viewer": "viewer", "operator": "operator", "approver": "approver"}
