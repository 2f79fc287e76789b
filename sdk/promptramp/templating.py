"""Placeholders and rendering of `{{name}}` templates (the server renders identically)."""

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import MissingVariables

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

Message = dict[str, Any]


def variables_of(texts: Iterable[str]) -> list[str]:
    """Placeholder names in order of first appearance, each once."""
    return list(dict.fromkeys(name for text in texts for name in PLACEHOLDER.findall(text)))


def texts_of(template: str | None, messages: list[Message] | None) -> list[str]:
    """The texts that carry placeholders: the template, or each message's content."""
    if messages is not None:
        return [message["content"] for message in messages]
    return [template or ""]


def render(
    template: str | None,
    messages: list[Message] | None,
    placeholders: list[str],
    values: Mapping[str, object],
) -> tuple[str | list[Message], list[str]]:
    """(rendered text or messages, names of the values no placeholder uses, sorted).

    `placeholders` are the prompt's variables; a missing value raises MissingVariables.
    """
    missing = [name for name in placeholders if name not in values]
    if missing:
        raise MissingVariables(missing)
    unused = sorted(set(values).difference(placeholders))

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)

    if messages is not None:
        return [{**message, "content": fill(message["content"])} for message in messages], unused
    return fill(template or ""), unused
