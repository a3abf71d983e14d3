"""Template filters of the pages: counts, fractions, money and power."""

from __future__ import annotations

from django import template

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
