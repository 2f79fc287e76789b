"""Caller attributes (``?attr.tenant=acme``, render's ``"attributes"``, the SDK's
``attributes=``): what overrides match besides the unit. At most 20, names as label names,
values strings of at most 200 characters. Never stored or logged: they live for one request."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote_plus

from core.errors import ValidationFailed

MAX_ATTRIBUTES = 20
MAX_VALUE_LENGTH = 200
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
QUERY_PREFIX = "attr."
# Names seen valid before: callers repeat a handful, so the expression runs once per name.
_KNOWN_NAMES_LIMIT = 4096
_valid_names: set[str] = set()


def attributes_of(pairs: Iterable[tuple[str, object]]) -> dict[str, str]:
    """The attributes as ``{name: value}``; ValidationFailed (400) for too many, a bad name, a
    value that is not a short string, or a name given twice."""
    attributes: dict[str, str] = {}
    for name, value in pairs:
        if name not in _valid_names and not _valid_name(name):
            raise ValidationFailed(
                "Attribute names match ^[a-z][a-z0-9_-]{0,63}$.", details={"field": "attributes"}
            )
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH:
            raise ValidationFailed(
                f"Attribute '{name}' must be a string of at most {MAX_VALUE_LENGTH} characters.",
                details={"field": "attributes", "attribute": name},
            )
        if name in attributes:
            raise ValidationFailed(
                f"Attribute '{name}' is given twice.", details={"field": "attributes", "attribute": name}
            )
        attributes[name] = value
        if len(attributes) > MAX_ATTRIBUTES:
            raise ValidationFailed(
                f"At most {MAX_ATTRIBUTES} attributes may be given.", details={"field": "attributes"}
            )
    return attributes


def _valid_name(name: object) -> bool:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return False
    if len(_valid_names) < _KNOWN_NAMES_LIMIT:
        _valid_names.add(name)
    return True


def query_unit_and_attributes(query: str) -> tuple[str | None, dict[str, str]]:
    """A resolve's query string: its ``unit`` (the last one given, as Django's ``QueryDict.get``
    answers) and its ``attr.NAME=VALUE`` attributes, checked as ``attributes_of`` checks them.
    Read as ``parse_qsl(query, keep_blank_values=True)`` reads it, at a fraction of its cost: on
    every resolve of the fast path, so one pass, and only a part with ``%`` or ``+`` is unquoted."""
    unit = None
    attributes: dict[str, str] = {}
    for part in query.split("&"):
        if part:
            field, _, value = part.partition("=")
            if "%" in part or "+" in part:
                field, value = unquote_plus(field), unquote_plus(value)
            if field == "unit":
                unit = value
            elif field[:5] == QUERY_PREFIX:
                name = field[5:]
                if (
                    (name not in _valid_names and not _valid_name(name))
                    or len(value) > MAX_VALUE_LENGTH
                    or name in attributes
                    or len(attributes) == MAX_ATTRIBUTES
                ):
                    return _query_read_slowly(query)  # which says what is wrong
                attributes[name] = value
    return unit, attributes


def _query_read_slowly(query: str) -> tuple[str | None, dict[str, str]]:
    pairs = parse_qsl(query, keep_blank_values=True)
    units = [value for field, value in pairs if field == "unit"]
    attributes = attributes_of((field[5:], value) for field, value in pairs if field[:5] == QUERY_PREFIX)
    return units[-1] if units else None, attributes
