"""The difference between two versions of a prompt, as unified diffs (pure; no Django).

The content diff compares the template, or the chat messages written one after the other as
``[role]`` followed by the content; the config diff compares the config as indented JSON with
sorted keys (so key order never shows). A text that does not end in a newline is marked the way
git marks it, so even a trailing newline shows.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NO_NEWLINE = "\\ No newline at end of file\n"


@dataclass(frozen=True)
class VersionContent:
    version: int
    template: str | None
    messages: Sequence[Mapping[str, Any]] | None
    model: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class VersionDiff:
    from_version: int
    to_version: int
    content_diff: str
    config_diff: str
    model_changed: bool
    from_model: str
    to_model: str

    @property
    def identical(self) -> bool:
        return not (self.content_diff or self.config_diff or self.model_changed)


def content_text(content: VersionContent) -> str:
    if content.template is not None:
        return content.template
    return "".join(f"[{message['role']}]\n{message['content']}\n" for message in content.messages or [])


def config_text(config: Mapping[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def diff_lines(text: str) -> list[str]:
    """Lines with their newline; a last line without one carries git's marker."""
    if not text:
        return []
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1] + "\n" + NO_NEWLINE)
    return lines


def unified_diff(old: str, new: str, *, old_name: str, new_name: str, context: int = 3) -> str:
    """A unified diff of two texts, "" when they are equal."""
    return "".join(
        difflib.unified_diff(diff_lines(old), diff_lines(new), fromfile=old_name, tofile=new_name, n=context)
    )


def version_diff(old: VersionContent, new: VersionContent, *, context: int = 3) -> VersionDiff:
    """What changed from ``old`` to ``new``."""
    old_name, new_name = f"v{old.version}", f"v{new.version}"
    return VersionDiff(
        from_version=old.version,
        to_version=new.version,
        content_diff=unified_diff(
            content_text(old), content_text(new), old_name=old_name, new_name=new_name, context=context
        ),
        config_diff=unified_diff(
            config_text(old.config),
            config_text(new.config),
            old_name=f"{old_name}/config",
            new_name=f"{new_name}/config",
            context=context,
        ),
        model_changed=old.model != new.model,
        from_model=old.model,
        to_model=new.model,
    )
