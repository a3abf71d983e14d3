"""Template tag of the read-only banner that every page shows."""

from __future__ import annotations

from django import template

from wva_web.dashboard import status

register = template.Library()


@register.simple_tag
def read_only_banner() -> status.ReadOnlyBanner | None:
    """Return the banner of a read-only instance, or None when it leads."""
    return status.read_only_banner()
