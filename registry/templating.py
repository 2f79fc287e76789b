"""Placeholders and rendering, shared in behaviour with the SDK (sdk/promptramp/templating.py).

A placeholder is ``{{ name }}``; values are inserted with ``str()``. Missing values are an error
naming them; values nobody asked for are ignored and reported. The work is bounded: a value
longer than 64 KiB, or an output that would be longer than 1 MiB (a template with thousands of
placeholders and a large value), is refused before anything is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_VALUE_BYTES = 64 * 1024
MAX_OUTPUT_BYTES = 1024 * 1024


class MissingVariables(ValueError):
    def __init__(self, names: Sequence[str]) -> None:
        super().__init__("Missing variables: " + ", ".join(names))
        self.names = list(names)


class TooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Rendered:
    content: str | list[dict[str, Any]]
    unused_variables: list[str]


def variables_of(texts: Sequence[str]) -> list[str]:
    """Placeholder names in order of first appearance, each once."""
    seen: dict[str, None] = {}
    for text in texts:
        for name in PLACEHOLDER.findall(text):
            seen.setdefault(name, None)
    return list(seen)


def message_texts(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(message.get("content", "")) for message in messages]


def render(
    *,
    template: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
    values: Mapping[str, Any],
) -> Rendered:
    texts = [template] if template is not None else message_texts(messages or [])
    needed = variables_of(texts)
    missing = [name for name in needed if name not in values]
    if missing:
        raise MissingVariables(missing)
    unused = sorted(set(values) - set(needed))
    strings = {name: str(values[name]) for name in needed}
    _check_size(texts, strings)

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: strings[m.group(1)], text)

    if template is not None:
        return Rendered(content=fill(template), unused_variables=unused)
    rendered = [{**message, "content": fill(str(message.get("content", "")))} for message in messages or []]
    return Rendered(content=rendered, unused_variables=unused)


def _check_size(texts: Sequence[str], strings: Mapping[str, str]) -> None:
    """Raise TooLarge when a value or the output would pass its bound (in UTF-8 bytes)."""
    sizes = {}
    for name, text in strings.items():
        sizes[name] = len(text.encode())
        if sizes[name] > MAX_VALUE_BYTES:
            raise TooLarge(f"The value of '{name}' is {sizes[name]:,} bytes; at most {MAX_VALUE_BYTES:,}.")
    output = 0
    for text in texts:
        output += len(text.encode())
        for match in PLACEHOLDER.finditer(text):
            output += sizes[match.group(1)] - len(match.group(0))
    if output > MAX_OUTPUT_BYTES:
        raise TooLarge(f"The rendered prompt would be {output:,} bytes; at most {MAX_OUTPUT_BYTES:,}.")
