"""Page-number pagination of every list endpoint, with a `page_size` parameter."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination

# Largest page a client may ask for with ?page_size=; larger values are capped.
MAX_PAGE_SIZE = 200


class ConsolePagination(PageNumberPagination):
    """Pages of PAGE_SIZE rows (50 by default); `?page_size=` up to 200."""

    page_size = settings.REST_FRAMEWORK.get("PAGE_SIZE", 50)
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
