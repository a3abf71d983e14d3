"""Migration 0002 copies plot files of earlier runs into the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("simulate", "0001_initial")]
AFTER = [("simulate", "0002_plots_in_database")]


@pytest.mark.django_db(transaction=True)
def test_plot_files_copied_into_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "comparisons"
    (root / "4").mkdir(parents=True)
    (root / "4" / "replicas.html").write_text("<html>replicas</html>")
    monkeypatch.setenv("WVA_COMPARE_DIR", str(root))
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_run = executor.loader.project_state(BEFORE).apps.get_model(
        "simulate", "ComparisonRun"
    )
    now = timezone.now()
    run = old_run.objects.create(
        created_at=now,
        updated_at=now,
        status="succeeded",
        plot_dir="4",
        plot_files=["replicas.html", "load.html", "plotly.min.js"],
    )
    # when the database moves to plots in rows
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    plot_model = executor.loader.project_state(AFTER).apps.get_model(
        "simulate", "ComparisonPlot"
    )
    # then the file found is a row; the missing one and non-HTML are left out
    plots = list(plot_model.objects.filter(run_id=run.pk).values("name", "html"))
    assert plots == [{"name": "replicas.html", "html": "<html>replicas</html>"}]
