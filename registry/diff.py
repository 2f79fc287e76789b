"""How two versions of a prompt differ (pure; no Django): as unified diffs (the API's
``…/versions/{n}/diff``) and side by side, as rows a template prints (the admin's compare page).

Both compare the content (the template, or the chat messages one after the other), the model
and the config, written as indented JSON with sorted keys (so key order never shows). In a
unified diff, a text that does not end in a newline is marked the way git marks it, so even a
trailing newline shows; side by side, the characters that changed inside a changed line are
marked, and long unchanged stretches folded.

The side-by-side comparison is bounded, whatever a writer stores: above ``LINE_DIFF_ABOVE``
characters (the two sides together) it is a plain line diff (the common first and last lines kept,
the lines between shown as changed, nothing marked inside them), and within a comparison the
characters inside changed lines are marked only while ``CHARACTER_MARK_BUDGET`` (the sum of the
products of the paired lines' lengths) lasts; past it a changed line is marked whole.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Literal

NO_NEWLINE = "\\ No newline at end of file\n"
RowKind = Literal["equal", "replace", "delete", "insert", "skip", "cut"]
# Below this similarity a changed line is marked whole rather than in scattered fragments.
FRAGMENT_RATIO = 0.4
# Matching lines and characters costs up to the product of the lengths: these bound it.
LINE_DIFF_ABOVE = 64 * 1024
CHARACTER_MARK_BUDGET = 4_000_000
# A page shows at most this many rows of a section; a "cut" row says how many more there are.
MAX_ROWS = 2_000


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


# --- unified diffs ----------------------------------------------------------------------------


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


# --- side by side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    text: str
    changed: bool


@dataclass(frozen=True)
class Row:
    kind: RowKind
    old_number: int | None = None
    old: tuple[Segment, ...] = ()
    new_number: int | None = None
    new: tuple[Segment, ...] = ()
    skipped: int = 0  # for "skip" rows: how many unchanged lines are folded; for "cut": rows left out


@dataclass(frozen=True)
class Section:
    title: str
    rows: tuple[Row, ...]

    @property
    def changed(self) -> bool:
        return any(row.kind not in ("equal", "skip", "cut") for row in self.rows)


def version_sections(content: VersionContent) -> dict[str, list[str]]:
    """A version's content as lines, by section: "Template" or "Messages", "Model", "Config"."""
    if content.template is None:
        lines: list[str] = []
        for message in content.messages or []:
            lines.append(f"── {message.get('role', '')} ──")
            lines.extend(str(message.get("content", "")).splitlines() or [""])
        text = ("Messages", lines)
    else:
        text = ("Template", content.template.splitlines())
    return {text[0]: text[1], "Model": [content.model], "Config": config_text(content.config).splitlines()}


def side_by_side(old_lines: Sequence[str], new_lines: Sequence[str]) -> list[Row]:
    if sum(map(len, old_lines)) + sum(map(len, new_lines)) > LINE_DIFF_ABOVE:
        return _line_diff(old_lines, new_lines)
    rows: list[Row] = []
    budget = CHARACTER_MARK_BUDGET
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(_equal(i, j, old_lines[i]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True))
        elif tag == "delete":
            rows.extend(_deleted(i, old_lines[i]) for i in range(i1, i2))
        elif tag == "insert":
            rows.extend(_inserted(j, new_lines[j]) for j in range(j1, j2))
        else:
            for i, j in zip_longest(range(i1, i2), range(j1, j2)):
                if i is None:
                    rows.append(_inserted(j, new_lines[j]))
                elif j is None:
                    rows.append(_deleted(i, old_lines[i]))
                else:
                    cost = len(old_lines[i]) * len(new_lines[j])
                    if cost <= budget:
                        budget -= cost
                        old, new = _changed_parts(old_lines[i], new_lines[j])
                    else:
                        old, new = _whole(old_lines[i]), _whole(new_lines[j])
                    rows.append(Row("replace", i + 1, old, j + 1, new))
    return rows


def _line_diff(old_lines: Sequence[str], new_lines: Sequence[str]) -> list[Row]:
    """In linear time: the lines both sides start and end with are unchanged, the rest changed."""
    head = 0
    while head < min(len(old_lines), len(new_lines)) and old_lines[head] == new_lines[head]:
        head += 1
    tail = 0
    while (
        tail < min(len(old_lines), len(new_lines)) - head
        and old_lines[len(old_lines) - 1 - tail] == new_lines[len(new_lines) - 1 - tail]
    ):
        tail += 1
    rows = [_equal(i, i, old_lines[i]) for i in range(head)]
    for i, j in zip_longest(range(head, len(old_lines) - tail), range(head, len(new_lines) - tail)):
        if i is None:
            rows.append(_inserted(j, new_lines[j]))
        elif j is None:
            rows.append(_deleted(i, old_lines[i]))
        else:
            rows.append(Row("replace", i + 1, _whole(old_lines[i]), j + 1, _whole(new_lines[j])))
    shift = len(new_lines) - len(old_lines)
    rows.extend(_equal(i, i + shift, old_lines[i]) for i in range(len(old_lines) - tail, len(old_lines)))
    return rows


def collapse(rows: Sequence[Row], *, context: int = 3) -> list[Row]:
    """Fold each run of more than 2 × context + 1 unchanged rows, keeping `context` rows around
    every change (and at the start and end of the text)."""
    folded: list[Row] = []
    run: list[Row] = []

    def flush(at_start: bool, at_end: bool) -> None:
        keep_head = 0 if at_start else context
        keep_tail = 0 if at_end else context
        if len(run) > keep_head + keep_tail + 1:
            folded.extend(run[:keep_head])
            folded.append(Row("skip", skipped=len(run) - keep_head - keep_tail))
            folded.extend(run[len(run) - keep_tail :])
        else:
            folded.extend(run)
        run.clear()

    seen_change = False
    for row in rows:
        if row.kind == "equal":
            run.append(row)
            continue
        flush(at_start=not seen_change, at_end=False)
        seen_change = True
        folded.append(row)
    if seen_change:
        flush(at_start=False, at_end=True)
    else:
        folded.extend(run)
    return folded


def compare(old: dict[str, list[str]], new: dict[str, list[str]], *, context: int = 3) -> list[Section]:
    """Sections of two versions side by side; a section only one side has is compared with nothing.
    A section keeps its first ``MAX_ROWS`` rows, then a "cut" row counting the rest."""
    titles = list(old) + [title for title in new if title not in old]
    return [
        Section(title, _cut(collapse(side_by_side(old.get(title, []), new.get(title, [])), context=context)))
        for title in titles
    ]


def _cut(rows: list[Row]) -> tuple[Row, ...]:
    if len(rows) <= MAX_ROWS:
        return tuple(rows)
    return (*rows[:MAX_ROWS], Row("cut", skipped=len(rows) - MAX_ROWS))


def _equal(old_index: int, new_index: int, line: str) -> Row:
    text = (Segment(line, False),)
    return Row("equal", old_index + 1, text, new_index + 1, text)


def _deleted(index: int, line: str) -> Row:
    """A line only the old version has: the row's kind marks it, not its characters."""
    return Row("delete", old_number=index + 1, old=(Segment(line, False),))


def _inserted(index: int, line: str) -> Row:
    return Row("insert", new_number=index + 1, new=(Segment(line, False),))


def _whole(line: str) -> tuple[Segment, ...]:
    return (Segment(line, True),)


def _changed_parts(old: str, new: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    if matcher.ratio() < FRAGMENT_RATIO:
        return _whole(old), _whole(new)
    old_parts: list[Segment] = []
    new_parts: list[Segment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            old_parts.append(Segment(old[i1:i2], tag != "equal"))
        if j2 > j1:
            new_parts.append(Segment(new[j1:j2], tag != "equal"))
    return tuple(old_parts), tuple(new_parts)
