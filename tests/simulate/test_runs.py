"""Comparison runs: starting, the task with the real simulator, progress, failures.

The task tests call `fleetsim.compare.run_comparison` itself on 60 s of the
Azure conversation trace with two policies (a few seconds per test).
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.simulate.conftest import SHORT, People, make_run
from wva_web.control import lock
from wva_web.control.models import AuditLog
from wva_web.simulate import conf, runs
from wva_web.simulate.models import ComparisonPlot, ComparisonRun, RunStatus
from wva_web.simulate.options import ComparisonOptions
from wva_web.simulate.tasks import run_comparison_task


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_start_run_queues_row(
    people: People, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        run = runs.start_run(people.users["operator"], SHORT)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.created_by == people.users["operator"]
    assert run.options["policies"] == ["hpa-kv", "wva"]
    assert run.progress == 0.0
    # the task is sent only after the row is committed
    assert len(callbacks) == 1


def test_start_run_writes_audit_row(people: People) -> None:
    run = runs.start_run(people.users["approver"], SHORT)
    row = AuditLog.objects.get(object_type="comparison_run")
    assert row.object_id == str(run.pk)
    assert row.verb == "start"
    assert row.actor == people.users["approver"]
    assert row.after["trace"] == "azure-conv"


@pytest.mark.parametrize("name", ["viewer", "outsider"])
def test_start_run_needs_operator(people: People, name: str) -> None:
    with pytest.raises(runs.RunForbidden, match="needs the operator role"):
        runs.start_run(people.users[name], SHORT)
    assert not ComparisonRun.objects.exists()


def test_start_run_limit_counts_active_runs(people: People, settings: Any) -> None:
    settings.WVA_COMPARE_MAX_RUNNING = 1
    settings.WVA_COMPARE_MAX_QUEUED = 1
    make_run(
        people.users["operator"], status=RunStatus.RUNNING, started_at=timezone.now()
    )
    make_run(people.users["operator"])
    make_run(people.users["operator"], status=RunStatus.SUCCEEDED)
    with pytest.raises(runs.RunLimitReached) as caught:
        runs.start_run(people.users["operator"], SHORT)
    assert str(caught.value) == (
        "2 comparison runs are already queued or running and the limit is 2: "
        "wait for one to finish"
    )


@pytest.mark.django_db(transaction=True)
def test_start_run_limit_message_singular(people: People, settings: Any) -> None:
    settings.WVA_COMPARE_MAX_QUEUED = 0
    make_run(people.users["operator"])
    with pytest.raises(runs.RunLimitReached) as caught:
        runs.start_run(people.users["operator"], SHORT)
    assert str(caught.value).startswith(
        "1 comparison run is already queued or running and the limit is 1"
    )


@pytest.mark.parametrize(
    ("count", "kind", "text"),
    [
        (0, "", "0 comparison runs"),
        (1, "", "1 comparison run"),
        (2, "", "2 comparison runs"),
        (1, "lost", "1 lost comparison run"),
        (3, "never-started", "3 never-started comparison runs"),
    ],
)
def test_format_run_count_plural(count: int, kind: str, text: str) -> None:
    assert runs.format_run_count(count, kind) == text


def test_task_stores_result_of_real_run(people: People, temp_root: Path) -> None:
    run = make_run(people.users["operator"])
    # when the task runs the simulator on 60 s of trace
    outcome = run_comparison_task.apply(args=[run.pk]).get()
    run.refresh_from_db()
    # then the run succeeded with one column of figures per policy
    assert outcome == "finished"
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert sorted(run.result["policies"]) == ["hpa-kv", "wva"]
    figures = run.result["policies"]["wva"]
    for key in ("goodput_rps", "failed_requests", "slo_attainment", "usd", "kwh"):
        assert isinstance(figures[key], int | float), key
    assert run.result["duration_s"] == pytest.approx(60.0, abs=1.0)
    assert run.progress == 1.0
    assert run.error == ""
    assert run.worker_hostname == ""
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at


@pytest.mark.django_db(transaction=True)
def test_real_run_plots_served_from_database(people: People, temp_root: Path) -> None:
    run = make_run(people.users["operator"])
    run_comparison_task.apply(args=[run.pk])
    # then the plots are rows of the run, and no file is left on disk
    plots = list(ComparisonPlot.objects.filter(run=run))
    assert [plot.name for plot in plots] == [
        "replicas.html",
        "load.html",
        "kv_usage.html",
        "failures.html",
    ]
    for plot in plots:
        assert plot.size_bytes == len(plot.html.encode("utf-8")), plot.name
        assert "plotly" in plot.html, plot.name
    assert list(temp_root.iterdir()) == []
    # and a web view serves each one from its row, with local plotly.js
    client = people.client("viewer")
    for plot in plots:
        response = client.get(f"/compare/{run.pk}/plots/{plot.name}")
        text = response.content.decode()
        assert response.status_code == 200, plot.name
        assert 'src="/vendor/plotly.min.js?v=' in text, plot.name
        assert 'src="plotly.min.js"' not in text, plot.name


def test_limit_plot_size_keeps_what_fits() -> None:
    plots = [("a.html", "x" * 400), ("b.html", "é" * 400), ("c.html", "z" * 100)]
    kept, message = runs.limit_plot_size(plots, max_bytes=1000)
    # "é" is two bytes in UTF-8, so b.html (800 bytes) does not fit after a.html
    assert [name for name, _ in kept] == ["a.html", "c.html"]
    assert message == (
        "plots not stored: b.html (800 bytes) would bring the run's plots past the "
        "limit of 1.0 kB (WVA_COMPARE_MAX_PLOT_BYTES); replay a shorter trace "
        "slice or fewer policies, or raise the limit"
    )


def test_limit_plot_size_all_fit() -> None:
    plots = [("a.html", "x" * 400), ("b.html", "y" * 600)]
    assert runs.limit_plot_size(plots, max_bytes=1000) == (plots, "")


@pytest.mark.django_db(transaction=True)
def test_task_drops_plots_past_size_limit(people: People, settings: Any) -> None:
    # given a limit below the size of the smallest plot of a real run
    settings.WVA_COMPARE_MAX_PLOT_BYTES = 1000
    run = make_run(people.users["operator"])
    run_comparison_task.apply(args=[run.pk])
    run.refresh_from_db()
    # then the run succeeds with its figures, no plots and a message why
    assert run.status == RunStatus.SUCCEEDED
    assert "wva" in run.result["policies"]
    assert not ComparisonPlot.objects.filter(run=run).exists()
    assert run.error.startswith("plots not stored: replicas.html (")
    assert "past the limit of 1.0 kB (WVA_COMPARE_MAX_PLOT_BYTES)" in run.error
    page = people.client("viewer").get(f"/compare/{run.pk}/").content.decode()
    assert "plots not stored: replicas.html" in page


def test_store_success_skips_run_no_longer_running(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.FAILED, error="lost")
    runs._store_success(run.pk, {"policies": {}}, [("a.html", "<html></html>")], "")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.result is None
    assert not ComparisonPlot.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_task_frees_its_slot(people: People) -> None:
    run = make_run(people.users["operator"])
    run_comparison_task.apply(args=[run.pk])
    holder = lock.new_holder()
    assert lock.acquire(holder, f"{runs.SLOT_PREFIX}0", ttl_s=60)


@pytest.mark.django_db(transaction=True)
def test_task_skips_finished_run(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.SUCCEEDED)
    assert run_comparison_task.apply(args=[run.pk]).get() == "skipped"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.result is None


@pytest.mark.django_db(transaction=True)
def test_task_stores_simulator_error(
    people: People, caplog: pytest.LogCaptureFixture
) -> None:
    # given a run whose fleet file was removed after it was queued
    options = ComparisonOptions(**{**SHORT.to_json(), "policies": ("wva",)})
    run = make_run(people.users["operator"], options=options)
    run.options = {**run.options, "fleet": "removed_fleet.json"}
    run.save(update_fields=["options"])
    # when the task runs it
    with caplog.at_level(logging.ERROR, logger="wva_web.simulate.runs"):
        run_comparison_task.apply(args=[run.pk])
    run.refresh_from_db()
    # then the run failed with the simulator's message, and the error is logged
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("ValueError: fleet file not found: ")
    assert run.error.endswith("removed_fleet.json")
    assert run.result is None
    assert run.finished_at is not None
    assert f"comparison run {run.pk} failed" in caplog.text


def test_progress_recorder_throttles_writes(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.RUNNING)
    clock = FakeClock()
    recorder = runs.ProgressRecorder(run.pk, interval_s=1.0, clock=clock)
    recorder(0.1, "hpa-kv")
    clock.now += 0.4
    recorder(0.2, "hpa-kv")
    run.refresh_from_db()
    assert (run.progress, run.progress_message) == (0.1, "hpa-kv")
    clock.now += 0.7
    recorder(0.3, "wva")
    run.refresh_from_db()
    assert (run.progress, run.progress_message) == (0.3, "wva")
    assert recorder.writes == 2


def test_progress_recorder_always_writes_end(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.RUNNING)
    clock = FakeClock()
    recorder = runs.ProgressRecorder(run.pk, interval_s=60.0, clock=clock)
    recorder(0.5, "hpa-kv")
    recorder(1.0, "done")
    run.refresh_from_db()
    assert (run.progress, run.progress_message) == (1.0, "done")


@pytest.mark.parametrize(
    ("value", "stored"), [(-0.5, 0.0), (1.7, 1.0), (float("nan"), 0.0)]
)
def test_progress_recorder_clamps_fraction(
    people: People, value: float, stored: float
) -> None:
    run = make_run(people.users["operator"], status=RunStatus.RUNNING)
    runs.ProgressRecorder(run.pk, interval_s=0.0)(value, "x")
    run.refresh_from_db()
    assert run.progress == stored


def test_progress_recorder_ignores_finished_run(people: People) -> None:
    run = make_run(people.users["operator"], status=RunStatus.FAILED, error="stop")
    runs.ProgressRecorder(run.pk, interval_s=0.0)(0.5, "late")
    run.refresh_from_db()
    assert run.progress == 0.0
    assert run.progress_message == ""


@pytest.mark.django_db(transaction=True)
def test_real_run_progress_reaches_row(people: People) -> None:
    """Every progress call of the simulator lands in the row while it runs."""
    from fleetsim.compare import run_comparison

    run = make_run(people.users["operator"], status=RunStatus.RUNNING)
    seen: list[tuple[float, str]] = []
    recorder = runs.ProgressRecorder(run.pk, interval_s=0.0)

    def progress(fraction: float, message: str) -> None:
        recorder(fraction, message)
        stored = ComparisonRun.objects.values_list("progress", "progress_message")
        seen.append(stored.get(pk=run.pk))

    run_comparison(runs.fleetsim_options(run.options), progress=progress)
    assert recorder.writes == len(seen)
    assert len(seen) >= 4
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions)
    assert 0.0 < fractions[len(fractions) // 2] < 1.0
    assert seen[-1][0] == 1.0
    assert {message for _, message in seen} >= {"hpa-kv", "wva"}


def test_execute_waits_when_slots_busy(people: People, settings: Any) -> None:
    settings.WVA_COMPARE_MAX_RUNNING = 1
    assert lock.acquire("other-worker", f"{runs.SLOT_PREFIX}0", ttl_s=600)
    run = make_run(people.users["operator"])
    # when a worker tries the run while the only slot is taken
    outcome = runs.execute_run(run.pk, can_wait=True)
    run.refresh_from_db()
    # then the run stays queued with the reason in its message
    assert outcome is runs.Outcome.WAITING
    assert run.status == RunStatus.QUEUED
    assert run.progress_message == "waiting for a free slot: 1 of 1 running"


def test_execute_fails_without_slot_when_eager(people: People) -> None:
    assert lock.acquire("other-worker", f"{runs.SLOT_PREFIX}0", ttl_s=600)
    run = make_run(people.users["operator"])
    assert runs.execute_run(run.pk, can_wait=False) is runs.Outcome.FINISHED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error == "no free slot: 1 comparison run is running and the limit is 1"


def test_execute_takes_second_slot(people: People, settings: Any) -> None:
    settings.WVA_COMPARE_MAX_RUNNING = 2
    assert lock.acquire("other-worker", f"{runs.SLOT_PREFIX}0", ttl_s=600)
    holder = lock.new_holder()
    assert runs._take_slot(holder) == f"{runs.SLOT_PREFIX}1"
    assert runs._take_slot(lock.new_holder()) is None


def test_lost_running_run_fails(people: People) -> None:
    long_ago = timezone.now() - dt.timedelta(
        seconds=conf.hard_time_limit_s() + conf.HARD_LIMIT_MARGIN_S + 5
    )
    lost = make_run(
        people.users["operator"], status=RunStatus.RUNNING, started_at=long_ago
    )
    fresh = make_run(
        people.users["operator"], status=RunStatus.RUNNING, started_at=timezone.now()
    )
    assert runs.fail_lost_runs() == 1
    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert lost.status == RunStatus.FAILED
    assert "the worker stopped without a result" in lost.error
    assert fresh.status == RunStatus.RUNNING


def test_never_started_run_fails(
    people: People, caplog: pytest.LogCaptureFixture
) -> None:
    old = timezone.now() - dt.timedelta(seconds=conf.queue_deadline_s() + 5)
    run = make_run(people.users["operator"], created_at=old)
    with caplog.at_level(logging.WARNING, logger="wva_web.simulate.runs"):
        runs.fail_lost_runs()
    assert (
        "failed 0 lost comparison runs and 1 never-started comparison run"
        in caplog.text
    )
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "consumes the 'comparisons' queue" in run.error


def test_plain_json_drops_non_finite() -> None:
    value = {"a": [1.0, float("inf")], 2: (float("nan"), True, None, "x")}
    assert runs.plain_json(value) == {"a": [1.0, None], "2": [None, True, None, "x"]}


@pytest.mark.django_db(transaction=True)
def test_task_keeps_figures_when_plots_fail(
    people: People, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a temp folder that cannot be a folder, because a file has its name
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))
    options = ComparisonOptions(**{**SHORT.to_json(), "policies": ("wva",)})
    run = make_run(people.users["operator"], options=options)
    # when the task runs
    run_comparison_task.apply(args=[run.pk])
    run.refresh_from_db()
    # then the figures are stored and the plot error is shown beside them
    assert run.status == RunStatus.SUCCEEDED
    assert "wva" in run.result["policies"]
    assert not ComparisonPlot.objects.filter(run=run).exists()
    assert run.error.startswith("plots not written: ")


def test_enqueue_fails_run_without_broker(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wva_web.celery import app as celery_app

    # given a broker address on loopback where nothing listens
    monkeypatch.setitem(celery_app.conf, "broker_url", "redis://127.0.0.1:18899/0")
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {})
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setitem(celery_app.conf, "task_publish_retry", False)
    monkeypatch.setitem(celery_app.conf, "broker_connection_timeout", 2)
    monkeypatch.setattr(celery_app, "_pool", None)
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    run = make_run(people.users["operator"])
    # when the run's task is sent
    runs.enqueue(run.pk)
    run.refresh_from_db()
    # then the run fails at once with the broker's error
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("sending the task to the broker failed: ")
