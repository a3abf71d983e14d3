"""One log line per variant decision that is held, capped or changed.

The line carries the reason codes and the bound of the Decision row, so a
search of the log finds the same codes as the pages and the API. It is
logged at INFO only when the target or the reasons differ from the
variant's previous decision. An unchanged repeat goes to DEBUG, so a hold
that lasts an hour does not fill the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import OuterRef, Subquery

from wva_web.catalog.models import Variant
from wva_web.control.cycle_view import VariantDecision
from wva_web.control.models import Decision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviousDecision:
    """Counts and reason codes of a variant's latest stored decision."""

    target: int
    reasons: tuple[str, ...]
    current: int | None = None
    ready: int | None = None


def previous_decisions(variant_ids: Iterable[int]) -> dict[int, PreviousDecision]:
    """Read the latest stored decision of each variant in two queries.

    Call it before the cycle stores its own decisions.
    """
    latest = Decision.objects.filter(variant=OuterRef("pk")).order_by(
        "-cycle__started_at", "-pk"
    )
    ids = (
        Variant.objects.filter(pk__in=list(variant_ids))
        .annotate(last_id=Subquery(latest.values("pk")[:1]))
        .values_list("last_id", flat=True)
    )
    rows = Decision.objects.filter(pk__in=[pk for pk in ids if pk is not None])
    return {
        row.variant_id: PreviousDecision(
            row.target_replicas,
            tuple(str(code) for code in row.reasons or []),
            row.current_replicas,
            row.ready_replicas,
        )
        for row in rows.only(
            "variant_id",
            "target_replicas",
            "reasons",
            "current_replicas",
            "ready_replicas",
        )
    }


def is_notable(current: int, decision: VariantDecision) -> bool:
    """True when the decision changes the count, or a rule held or capped it."""
    return (
        decision.target != current
        or bool(decision.bound_by)
        or bool(decision.held_scale_up)
    )


def log_decision(
    variant: str,
    current: int,
    decision: VariantDecision,
    previous: PreviousDecision | None,
) -> None:
    """Log a notable decision: INFO when it differs from the last one, else DEBUG."""
    if not is_notable(current, decision):
        return
    repeated = (
        previous is not None
        and previous.target == decision.target
        and previous.reasons == tuple(decision.reasons)
    )
    logger.log(
        logging.DEBUG if repeated else logging.INFO,
        "decision variant=%s current=%s target=%s reasons=%s bound_by=%s",
        variant,
        current,
        decision.target,
        ",".join(decision.reasons) or "-",
        decision.bound_by or "-",
    )
