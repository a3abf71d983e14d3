"""Policy comparison runs: options, status, progress, result and plots.

Status changes are conditional UPDATEs in `wva_web.simulate.runs`, each
filtered on the expected current status.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class ComparisonRunQuerySet(models.QuerySet["ComparisonRun"]):
    def active(self) -> ComparisonRunQuerySet:
        return self.filter(status__in=ACTIVE_STATUSES)

    def for_list(self) -> ComparisonRunQuerySet:
        """Return runs newest first, without the large result column."""
        return (
            self.select_related("created_by")
            .defer("result")
            .order_by("-created_at", "-id")
        )


class ComparisonRun(models.Model):
    """One run of `fleetsim.compare.run_comparison` with the options it used.

    Its plots are `ComparisonPlot` rows, stored in the same transaction that
    marks the run succeeded.
    """

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="comparison_runs",
    )
    created_at = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Time of the last status or progress write.
    updated_at = models.DateTimeField()
    options = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16,
        choices=RunStatus.choices,
        default=RunStatus.QUEUED,
        db_index=True,
    )
    progress = models.FloatField(default=0.0)
    progress_message = models.CharField(max_length=200, blank=True)
    # JSON without NaN or infinity: non-finite values are stored as null.
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Celery node name (`compare@host`) of the worker that started the run.
    worker_hostname = models.CharField(max_length=255, blank=True, db_index=True)

    objects = ComparisonRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0.0) & models.Q(progress__lte=1.0),
                name="comparison_progress_0_to_1",
            ),
        ]

    def __str__(self) -> str:
        return f"comparison {self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)

    @property
    def policies(self) -> list[str]:
        value = self.options.get("policies") if isinstance(self.options, dict) else []
        return [str(name) for name in value or []]


class ComparisonPlotQuerySet(models.QuerySet["ComparisonPlot"]):
    def names(self) -> ComparisonPlotQuerySet:
        """Return plots in the order the run wrote them, without their HTML."""
        return self.only("id", "run_id", "name").order_by("id")


class ComparisonPlot(models.Model):
    """One plotly HTML figure of a succeeded run, served by the comparison pages.

    `html` is the file as fleetsim wrote it. The pages point its plotly.js
    script tag at the console's own copy when they serve it.
    """

    run = models.ForeignKey(
        ComparisonRun, on_delete=models.CASCADE, related_name="plots"
    )
    name = models.CharField(max_length=100)
    html = models.TextField()
    size_bytes = models.PositiveIntegerField()

    objects = ComparisonPlotQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "name"], name="comparison_plot_name_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} of comparison {self.run_id}"
