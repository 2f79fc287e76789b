"""Prompt files: one prompt per YAML file, as `manage.py prompts import/export` read and write
them (pure; no Django).

```yaml
name: support.answer
kind: chat                     # text (with `template`) or chat (with `messages`); guessed when absent
description: Answers a customer's question.
tags: [support]
owners: [alice, group:support] # user names and group:NAME; optional
model: gpt-4o-mini
config: {temperature: 0.2}
messages:
  - role: system
    content: You answer for {{company}}.
  - role: user
    content: "{{question}}"
```

`parse_prompt_file` checks the shape (known keys, types, plain JSON values) and leaves the rules
of names, sizes and owners to the registry's services. YAML aliases are refused: a few lines of
them can stand for gigabytes once written out as JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

FIELDS = ("name", "kind", "description", "tags", "owners", "model", "config", "template", "messages")
MAX_FILE_BYTES = 1024 * 1024
OTHER_LINE_BREAKS = "\r\x85\u2028\u2029"


class PromptFileError(ValueError):
    """A prompt file that cannot be read; the message names the file."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class PromptFile:
    """One prompt's declaration. ``None`` for description, tags and owners means "not declared"
    (an import leaves what the registry has)."""

    path: str
    name: str
    kind: str
    template: str | None = None
    messages: list[dict[str, Any]] | None = None
    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    tags: list[str] | None = None
    owners: list[str] | None = None


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(None, None, "aliases (*name) are not allowed", event.start_mark)
        return super().compose_node(parent, index)


def parse_prompt_file(path: str, text: str | bytes) -> PromptFile:
    """Read one prompt file; raises `PromptFileError` saying what is wrong and where."""
    if len(text) > MAX_FILE_BYTES:
        raise PromptFileError(path, f"larger than {MAX_FILE_BYTES // 1024} KB")
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        raise PromptFileError(path, f"not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise PromptFileError(path, "must be a YAML mapping with at least 'name'")
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise PromptFileError(path, f"unknown keys {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    for key, value in data.items():
        _check_json(path, str(key), value)

    def text_field(key: str, default: str | None = None) -> str | None:
        value = data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise PromptFileError(path, f"'{key}' must be a string")
        return value

    def name_list(key: str) -> list[str] | None:
        value = data.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise PromptFileError(path, f"'{key}' must be a list of strings")
        return value

    name = text_field("name")
    if not name:
        raise PromptFileError(path, "'name' is missing")
    kind = text_field("kind") or ("chat" if "messages" in data else "text")
    if kind not in ("text", "chat"):
        raise PromptFileError(path, f"'kind' must be text or chat, not {kind!r}")
    messages = data.get("messages")
    if messages is not None and not isinstance(messages, list):
        raise PromptFileError(path, "'messages' must be a list of {role, content}")
    config = data.get("config")
    if config is not None and not isinstance(config, dict):
        raise PromptFileError(path, "'config' must be a mapping")
    return PromptFile(
        path=path,
        name=name,
        kind=kind,
        template=text_field("template"),
        messages=messages,
        model=text_field("model", "") or "",
        config=config or {},
        description=text_field("description"),
        tags=name_list("tags"),
        owners=name_list("owners"),
    )


def _check_json(path: str, where: str, value: object) -> None:
    """Only what JSON holds: YAML's dates, sets, binary and non-string keys are refused."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PromptFileError(path, f"'{where}' holds {value}, which JSON cannot")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(path, f"{where}[{index}]", item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PromptFileError(path, f"'{where}' has a key {key!r} that is not a string")
            _check_json(path, f"{where}.{key}", item)
        return
    raise PromptFileError(
        path, f"'{where}' holds a {type(value).__name__}, which JSON cannot (quote it to keep it as text)"
    )


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so that a template reads as it is in a diff."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # YAML reads \r, NEL and the Unicode line separators as plain line breaks (or spaces, in
    # quotes), so strings holding them are written double-quoted, where they are escaped. PyYAML
    # itself falls back to quotes for whatever else a block cannot hold.
    if any(c in value for c in OTHER_LINE_BREAKS):
        style: str | None = '"'
    else:
        style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def dump_prompt_file(prompt: PromptFile) -> str:
    """The YAML `parse_prompt_file` reads back as ``prompt`` (keys in `FIELDS` order, undeclared
    ones left out)."""
    data: dict[str, Any] = {"name": prompt.name, "kind": prompt.kind}
    for key in ("description", "tags", "owners"):
        if getattr(prompt, key) is not None:
            data[key] = getattr(prompt, key)
    if prompt.model:
        data["model"] = prompt.model
    if prompt.config:
        data["config"] = prompt.config
    if prompt.kind == "chat":
        data["messages"] = prompt.messages
    else:
        data["template"] = prompt.template
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
