"""A replica that is still starting reads as starting, never as degraded."""

from __future__ import annotations

import datetime as dt

from tests.dashboard.conftest import World, make_cycle, make_sample
from wva_web.control.models import MetricSample, SampleStatus, VariantState

SINCE_1203 = "2025-05-01T12:03:00+00:00"
METRICS_TRUE = {
    "type": "MetricsAvailable",
    "status": "True",
    "reason": "metrics_ok",
    "message": "every ready replica reports KV-cache usage and queue",
    "since": SINCE_1203,
}


def start_bravo_replica(world: World, phase: str) -> None:
    """Bravo has 1 ready replica and 1 starting one whose scrape failed."""
    cycle = make_cycle(world.now - dt.timedelta(seconds=20))
    make_sample(cycle, world.bravo, "bravo-l40s-pod-1", 0.3, 0.0)
    if phase == "Running":
        sample = make_sample(
            cycle, world.bravo, "bravo-l40s-pod-2", None, None, SampleStatus.MISSING
        )
        MetricSample.objects.filter(pk=sample.pk).update(ready=False)
    VariantState.objects.filter(variant=world.bravo).update(
        last_cycle=cycle,
        current_replicas=2,
        ready_replicas=1,
        pending_replicas=1,
        degraded=False,
        conditions=[METRICS_TRUE],
    )


def test_running_unready_replica_reads_starting(world: World) -> None:
    start_bravo_replica(world, "Running")
    body = world.client("viewer_b").get("/variants/").content.decode()
    assert "1 replica starting" in body
    assert "Degraded" not in body


def test_pending_replica_reads_starting(world: World) -> None:
    start_bravo_replica(world, "Pending")
    body = world.client("viewer_b").get(f"/variants/{world.bravo.pk}/").content.decode()
    assert "1 replica starting" in body
    assert "Degraded" not in body


def test_starting_replica_not_degraded_in_live_json(world: World) -> None:
    start_bravo_replica(world, "Running")
    data = world.client("viewer_b").get("/live.json").json()
    bravo = next(v for v in data["variants"] if v["name"] == "bravo-l40s")
    assert bravo["degraded"] is False
    assert bravo["status"] == [{"text": "1 replica starting", "reason": "pending"}]


def test_ready_replica_without_metrics_still_degraded(world: World) -> None:
    # Given a ready replica that fails its scrape beside a starting one.
    start_bravo_replica(world, "Running")
    state = VariantState.objects.get(variant=world.bravo)
    make_sample(
        state.last_cycle,
        world.bravo,
        "bravo-l40s-pod-3",
        None,
        None,
        SampleStatus.MISSING,
    )
    VariantState.objects.filter(variant=world.bravo).update(current_replicas=3)
    # When the variant list is read.
    body = world.client("viewer_b").get("/variants/").content.decode()
    # Then only the ready replica counts as degraded.
    assert "Degraded: 1 of 3 replicas without metrics" in body
    assert "1 replica starting" in body
