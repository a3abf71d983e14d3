"""Read-back of the published desired count: when it changed, what the HPA reads.

A variant actuated by an HPA changes only when the HPA reads the console's
`wva_desired_replicas` gauge. These fields let the pages show "Published
desired 5 at 12:01; the HPA still sees 4" instead of showing 5 as if it
were in effect.
"""

from __future__ import annotations

import datetime as dt

from wva_web.control.models import VariantState
from wva_web.integrations.kube import HpaStatus


def record_readback(
    state: VariantState,
    previous_desired: int | None,
    hpa: HpaStatus | None,
    now: dt.datetime,
) -> None:
    """Set the publication time and the HPA's view on `state`; the caller saves it.

    `state.desired_replicas` must already hold this cycle's value, and
    `previous_desired` the value before it. The publication time moves only
    when the value changes, so a value published again keeps its first time.
    """
    desired = state.desired_replicas
    if desired is None:
        state.desired_published_at = None
    elif state.desired_published_at is None or desired != previous_desired:
        state.desired_published_at = now
    if hpa is None:
        state.hpa_name = ""
        state.hpa_current_replicas = None
        state.hpa_desired_replicas = None
        state.hpa_metric_value = None
        state.hpa_read_at = None
        return
    state.hpa_name = hpa.name
    state.hpa_current_replicas = hpa.current_replicas
    state.hpa_desired_replicas = hpa.desired_replicas
    state.hpa_metric_value = hpa.metric_value
    state.hpa_read_at = now
