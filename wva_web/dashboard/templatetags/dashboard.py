"""Template filters of the pages: counts, fractions, money, power and times."""

from __future__ import annotations

import datetime as dt
import re

from django import template
from django.urls import reverse
from django.utils import timezone

from wva_web.control.models import ScaleAction
from wva_web.dashboard import reasons, vendor

register = template.Library()


# A missing value reaches these filters as None. It arrives as "" when the
# template looked up a field of a missing object. Both are shown as "unknown".


@register.filter
def unknown(value: object) -> object:
    """Show a missing value as "unknown", never as 0."""
    return "unknown" if value is None or value == "" else value


@register.filter
def percent(value: object) -> str:
    """Format a fraction (0 to 1) as a percentage with one decimal."""
    if not isinstance(value, int | float):
        return "unknown"
    return f"{value * 100:.1f}%"


@register.filter
def usd(value: object) -> str:
    if not isinstance(value, int | float):
        return "unknown"
    return f"${value:,.2f}"


@register.filter
def signed_usd(value: object) -> str:
    """Format a cost change per hour with its sign, e.g. "+$24.58/h"."""
    if not isinstance(value, int | float):
        return "unknown"
    sign = "±"
    if value > 0:
        sign = "+"
    elif value < 0:
        sign = "-"
    return f"{sign}${abs(value):,.2f}/h"


@register.filter
def watts(value: object) -> str:
    if not isinstance(value, int | float):
        return "unknown"
    return f"{value:,.0f} W"


@register.filter
def number(value: object) -> str:
    """Format a metric value with up to three decimals; None is "unknown"."""
    if not isinstance(value, int | float):
        return "unknown"
    return f"{value:.3f}".rstrip("0").rstrip(".")


@register.filter
def get(mapping: dict[str, object], key: str) -> object:
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.simple_tag
def plotly_js_url() -> str:
    """Return the URL of plotly.js with its version, so caches see a new version."""
    return f"{reverse('dashboard:plotly-js')}?v={vendor.plotly_version()}"


# The one format of timestamps on the pages, in the console's time zone (UTC
# by default): seconds, no microseconds, no offset.
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
)


@register.filter
def stamp(value: object) -> str:
    """Format a datetime or an ISO 8601 string as "2026-12-04 16:11:10"; None is ""."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, dt.datetime):
        return ""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime(STAMP_FORMAT)


@register.filter
def stamps_in(text: object) -> str:
    """Reformat every ISO 8601 timestamp inside a message with `stamp`."""
    if not isinstance(text, str):
        return "" if text is None else str(text)
    return ISO_DATETIME.sub(lambda match: stamp(match.group(0)), text)


@register.filter
def audit_value(value: object) -> str:
    """Show one audited value: None as "none", "" as "empty", times with `stamp`."""
    if value is None:
        return "none"
    if value == "":
        return "empty"
    return stamps_in(value)


@register.filter
def reason_text(code: object) -> str:
    """Return the plain-language text of a reason code, "" when unknown."""
    return reasons.reason_text(code) if isinstance(code, str) else ""


@register.filter
def plain_reason_list(message: object) -> str:
    """Return a message of reason codes in plain words, "" for any other message."""
    if not isinstance(message, str):
        return ""
    codes = reasons.split_reason_list(message)
    return reasons.plain_reasons(codes) if codes else ""


@register.filter
def override_text(action: ScaleAction) -> str:
    """Describe an override, e.g. "override: 4 replicas instead of the proposed 3"."""
    if action.override_replicas is None:
        return ""
    return (
        f"override: {action.override_replicas} replicas instead of the proposed "
        f"{action.to_replicas}"
    )


@register.filter
def pin_text(action: ScaleAction) -> str:
    """Describe the pin an override set, e.g. "pinned for 30 min, until ..."."""
    if action.override_replicas is None:
        return ""
    until = action.override_until
    if until is None:
        return "not pinned: the next control cycle plans from this count"
    if action.decided_at is None:
        return f"pinned until {stamp(until)}"
    minutes = round((until - action.decided_at).total_seconds() / 60)
    return f"pinned for {minutes} min, until {stamp(until)}"
