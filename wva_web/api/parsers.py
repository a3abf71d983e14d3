"""Request body parsers of the REST API."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """JSON parser that rejects bodies nested too deeply for Python's parser.

    The standard library's decoder recurses once per nesting level, so a
    body of 100,000 `[` raises RecursionError, which would reach the client
    as a 500.
    """

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                "JSON parse error - the body is nested too deeply"
            ) from None
