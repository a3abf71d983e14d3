"""Move comparison plots from files into `ComparisonPlot` rows.

Runs from before this migration kept their plots in `<root>/<plot_dir>/`,
where root was `WVA_COMPARE_DIR` or `var/comparisons`. Plot files found there
are copied into the database; missing ones are left out, and the run then
shows its figures table without those plots.
"""

import os
from pathlib import Path

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def copy_plot_files(apps, schema_editor):
    run_model = apps.get_model("simulate", "ComparisonRun")
    plot_model = apps.get_model("simulate", "ComparisonPlot")
    default = Path(settings.BASE_DIR) / "var" / "comparisons"
    root = Path(os.environ.get("WVA_COMPARE_DIR") or default)
    runs = run_model.objects.exclude(plot_dir="").only("id", "plot_dir", "plot_files")
    for run in runs.iterator():
        for name in run.plot_files or []:
            path = root / run.plot_dir / str(name)
            if not str(name).endswith(".html") or not path.is_file():
                continue
            html = path.read_text(encoding="utf-8", errors="replace")
            plot_model.objects.create(
                run_id=run.pk,
                name=str(name)[:100],
                html=html,
                size_bytes=len(html.encode("utf-8")),
            )


class Migration(migrations.Migration):
    dependencies = [
        ("simulate", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="comparisonrun",
            name="worker_hostname",
            field=models.CharField(blank=True, db_index=True, max_length=255),
        ),
        migrations.CreateModel(
            name="ComparisonPlot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("html", models.TextField()),
                ("size_bytes", models.PositiveIntegerField()),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="plots",
                        to="simulate.comparisonrun",
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("run", "name"), name="comparison_plot_name_unique"
                    )
                ],
            },
        ),
        migrations.RunPython(copy_plot_files, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="comparisonrun",
            name="plot_dir",
        ),
        migrations.RemoveField(
            model_name="comparisonrun",
            name="plot_files",
        ),
    ]
