"""Reading what a client sends to the JSON API: the body parser with its limits, the body as an
object of known fields, and query parameters.

The parser refuses, with the JSON error shape: a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413;
no more than the limit is read), malformed or non-UTF-8 JSON, NaN/Infinity and lone surrogates
(400), lists and objects nested deeper than ``MAX_NESTING`` (400: nothing the API takes nests
that deep, and deeper values would exhaust the stack of code that walks them), and NUL characters
anywhere in a string (400: PostgreSQL cannot store them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import IO, Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.serializers import BaseSerializer

from core.errors import PayloadTooLarge, ValidationFailed
from core.json_values import has_nul, nesting_depth

MAX_QUERY_VALUE_CHARS = 500
MAX_NESTING = 64


class JSONBodyParser(BaseParser):
    media_type = "application/json"

    def parse(
        self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        limit = int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(
                f"The request body is larger than {limit} bytes.", details={"max_bytes": limit}
            )
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from exc
        if raw.count(b"[") + raw.count(b"{") > MAX_NESTING and nesting_depth(data) > MAX_NESTING:
            raise ValidationFailed(
                f"The body nests lists and objects more than {MAX_NESTING} levels deep.",
                details={"max_nesting": MAX_NESTING},
            )
        if b"\\u0000" in raw and has_nul(data):
            raise ValidationFailed("Text may not contain NUL (\\u0000) characters.")
        return data


def json_object(request: Request, fields: type[BaseSerializer[Any]] | Collection[str]) -> dict[str, Any]:
    """The body as a dict holding only known fields (a serializer class names them).

    Values are passed on as sent: the services check their types and values.
    """
    data = request.data
    if not isinstance(data, Mapping):
        raise ValidationFailed("The request body must be a JSON object.")
    known = set(fields().fields) if isinstance(fields, type) else set(fields)
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ValidationFailed(
            "Unknown fields in the request body.", details={"unknown": unknown, "known": sorted(known)}
        )
    return dict(data)


def query_text(request: Request, name: str) -> str | None:
    """A query parameter as text, or None when absent; NUL characters and overlong values are
    refused (400) before they reach a query."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if "\x00" in value or len(value) > MAX_QUERY_VALUE_CHARS:
        raise ValidationFailed(
            f"Query parameter '{name}' must be text of at most {MAX_QUERY_VALUE_CHARS} characters "
            "without NUL characters."
        )
    return value


def query_positive_int(request: Request, name: str) -> int | None:
    """A query parameter that must be a positive integer (400 otherwise), or None when absent."""
    value = query_text(request, name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) < 1:
        raise ValidationFailed(f"Query parameter '{name}' must be a positive integer.", details={name: value})
    return int(value)
