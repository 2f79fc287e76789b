"""Placeholders and rendering, shared in behaviour with the SDK (sdk/promptramp/templating.py).

A placeholder is ``{{ name }}``; values are inserted with ``str()``. Missing values are an error
naming them; values nobody asked for are ignored and reported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class MissingVariables(ValueError):
    def __init__(self, names: Sequence[str]) -> None:
        super().__init__("Missing variables: " + ", ".join(names))
        self.names = list(names)


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

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)

    if template is not None:
        return Rendered(content=fill(template), unused_variables=unused)
    rendered = [{**message, "content": fill(str(message.get("content", "")))} for message in messages or []]
    return Rendered(content=rendered, unused_variables=unused)
