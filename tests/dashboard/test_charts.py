"""Plotly fragments: no embedded library, gaps for missing values."""

from __future__ import annotations

import datetime as dt

from tests.dashboard.conftest import World, make_cycle, make_sample
from wva_web.control.models import AcceleratorSample, SampleStatus
from wva_web.dashboard import charts


def test_accelerator_chart_has_no_library(world: World) -> None:
    html = charts.accelerator_chart(
        AcceleratorSample.objects.select_related("accelerator")
    )
    assert 'id="chart-accelerators"' in html
    assert "Licensed under the MIT license" not in html


def test_accelerator_chart_empty_without_samples() -> None:
    assert charts.accelerator_chart([]) == ""


def test_variant_chart_keeps_missing_kv_as_gap(world: World) -> None:
    # given a later cycle in which pod-1 has no KV-cache sample
    later = make_cycle(world.cycle.started_at + dt.timedelta(seconds=30))
    make_sample(
        later, world.alpha, "alpha-h100-pod-1", None, None, SampleStatus.MISSING
    )
    samples = world.alpha.samples.filter(pod="alpha-h100-pod-1").order_by("sampled_at")
    # when
    html = charts.variant_chart(samples, [])
    # then the second point is null, not 0
    assert '"y":[40.0,null]' in html.replace(" ", "")
