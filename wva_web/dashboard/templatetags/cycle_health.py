"""Template tag of the stalled-cycles banner that every page shows."""

from __future__ import annotations

from typing import Any

from django import template

from wva_web.control.models import ControlCycle
from wva_web.dashboard import status

register = template.Library()


@register.simple_tag(takes_context=True)
def stalled_cycles_banner(context: Any) -> status.StalledCyclesBanner | None:
    """Return the banner when no control cycle has finished for 3 cycle periods.

    Pages built with the shared page context pass `last_cycle` (the newest
    finished cycle, or None), which saves a query. Other pages query once.
    """
    if "last_cycle" in context:
        cycle = context["last_cycle"]
        if not isinstance(cycle, ControlCycle):
            return None
        finished = cycle.finished_at or cycle.started_at
    else:
        finished = status.last_finished_at()
    return status.stalled_cycles_banner(finished)
