"""How two versions of a prompt differ (pure; no Django): as unified diffs (the API's
``…/versions/{n}/diff``) and side by side, as rows a template prints (the admin's compare page).

Both compare the content (the template, or the chat messages one after the other), the model
and the config, written as indented JSON with sorted keys (so key order never shows). In a
unified diff, a text that does not end in a newline is marked the way git marks it, so even a
trailing newline shows; side by side, the characters that changed inside a changed line are
marked, and long unchanged stretches folded.

Both are bounded, whatever a writer stores: difflib's search for matching lines (or characters)
can cost the cube of their number, so it runs in a ``BoundedMatcher`` that counts its steps. Above
``LINE_DIFF_ABOVE`` characters (the two sides together), or once the search has taken
``MATCH_BUDGET`` steps, a diff is a plain line diff: the common first and last lines kept, the
lines between shown as changed (removed and added; side by side, nothing marked inside them).
Side by side, the characters inside changed lines are marked with what the line search left of
the budget; past it a changed line is marked whole. Either way says whether it is the plain line
diff (``VersionDiff.line_diff``, ``Section.line_diff``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, Literal, TypeVar

T = TypeVar("T")
NO_NEWLINE = "\\ No newline at end of file\n"
RowKind = Literal["equal", "replace", "delete", "insert", "skip", "cut"]
# Below this similarity a changed line is marked whole rather than in scattered fragments.
FRAGMENT_RATIO = 0.4
# Above this many characters (both sides together) lines are not matched: a plain line diff.
LINE_DIFF_ABOVE = 64 * 1024
# The steps one comparison's search for matching lines and characters may take (about 0.3 s).
MATCH_BUDGET = 4_000_000
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
    line_diff: bool  # a diff is the plain line diff (too large, or too costly to match)

    @property
    def identical(self) -> bool:
        return not (self.content_diff or self.config_diff or self.model_changed)


def content_text(content: VersionContent) -> str:
    if content.template is not None:
        return content.template
    return "".join(f"[{message['role']}]\n{message['content']}\n" for message in content.messages or [])


def config_text(config: Mapping[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- matching, bounded -----------------------------------------------------------------------


class _OverBudget(Exception):
    """A BoundedMatcher's search has taken its budget of steps."""


class BoundedMatcher(difflib.SequenceMatcher[T]):
    """difflib's SequenceMatcher with its search for matching blocks bounded. Each search of a
    range takes, from ``budget``, the range's length plus the places in ``b`` of the elements it
    looks up (at least what the search does). Once the budget is spent (a negative budget: at the
    first search), the matching blocks are only what both sides start and end with, found in
    linear time, and ``plain`` is True: everything between shows as changed."""

    b2j: dict[T, list[int]]  # set by SequenceMatcher: where each element of b is

    def __init__(self, a: Sequence[T], b: Sequence[T], *, budget: int, autojunk: bool) -> None:
        self.budget = budget
        self.plain = False
        self.sides = (a, b)
        self._blocks: list[difflib.Match] | None = None
        super().__init__(None, a, b, autojunk=autojunk)

    def find_longest_match(
        self, alo: int = 0, ahi: int | None = None, blo: int = 0, bhi: int | None = None
    ) -> difflib.Match:
        a = self.sides[0][alo:ahi]
        self.budget -= len(a) + sum(len(self.b2j.get(element, ())) for element in a)
        if self.budget < 0:
            raise _OverBudget
        return super().find_longest_match(alo, ahi, blo, bhi)

    def get_matching_blocks(self) -> list[difflib.Match]:
        if self._blocks is None:
            try:
                self._blocks = super().get_matching_blocks()
            except _OverBudget:
                self.plain = True
                self._blocks = _common_ends(*self.sides)
        return self._blocks


def _common_ends(a: Sequence[T], b: Sequence[T]) -> list[difflib.Match]:
    """The matching blocks of a plain diff: what both sides start with and what they end with."""
    shorter = min(len(a), len(b))
    head = 0
    while head < shorter and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < shorter - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    blocks = [difflib.Match(0, 0, head), difflib.Match(len(a) - tail, len(b) - tail, tail)]
    return [*(block for block in blocks if block.size), difflib.Match(len(a), len(b), 0)]


def line_matcher(
    old_lines: Sequence[str], new_lines: Sequence[str], *, autojunk: bool
) -> BoundedMatcher[str]:
    """The lines of two texts matched within ``MATCH_BUDGET``; above ``LINE_DIFF_ABOVE``
    characters, not at all (the plain line diff)."""
    size = sum(map(len, old_lines)) + sum(map(len, new_lines))
    budget = MATCH_BUDGET if size <= LINE_DIFF_ABOVE else -1
    return BoundedMatcher(old_lines, new_lines, budget=budget, autojunk=autojunk)


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


def unified_diff(old: str, new: str, *, old_name: str, new_name: str, context: int = 3) -> tuple[str, bool]:
    """A unified diff of two texts ("" when they are equal), as ``difflib.unified_diff`` writes
    it, and whether it is the plain line diff (then it is at most about twice the texts' size)."""
    old_lines, new_lines = diff_lines(old), diff_lines(new)
    matcher = line_matcher(old_lines, new_lines, autojunk=True)
    out: list[str] = []
    for group in matcher.get_grouped_opcodes(context):
        if not out:
            out += [f"--- {old_name}\n", f"+++ {new_name}\n"]
        first, last = group[0], group[-1]
        out.append(f"@@ -{_hunk_range(first[1], last[2])} +{_hunk_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(" " + line for line in old_lines[i1:i2])
            else:
                out.extend("-" + line for line in old_lines[i1:i2])
                out.extend("+" + line for line in new_lines[j1:j2])
    return "".join(out), matcher.plain and bool(out)


def _hunk_range(start: int, stop: int) -> str:
    """Lines ``start`` to ``stop`` (0-based, ``stop`` excluded) as a hunk header writes them."""
    if stop - start == 1:
        return str(start + 1)
    return f"{start + 1 if stop > start else start},{stop - start}"


def version_diff(old: VersionContent, new: VersionContent, *, context: int = 3) -> VersionDiff:
    """What changed from ``old`` to ``new``."""
    old_name, new_name = f"v{old.version}", f"v{new.version}"
    content_diff, content_plain = unified_diff(
        content_text(old), content_text(new), old_name=old_name, new_name=new_name, context=context
    )
    config_diff, config_plain = unified_diff(
        config_text(old.config),
        config_text(new.config),
        old_name=f"{old_name}/config",
        new_name=f"{new_name}/config",
        context=context,
    )
    return VersionDiff(
        from_version=old.version,
        to_version=new.version,
        content_diff=content_diff,
        config_diff=config_diff,
        model_changed=old.model != new.model,
        from_model=old.model,
        to_model=new.model,
        line_diff=content_plain or config_plain,
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
    line_diff: bool  # the rows are the plain line diff (too large, or too costly to match)

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
    """Two texts' lines as rows, before ``compare`` folds and cuts them."""
    return _matched_rows(line_matcher(old_lines, new_lines, autojunk=False))


def _matched_rows(matcher: BoundedMatcher[str]) -> list[Row]:
    """The rows of the lines a ``line_matcher`` matched (after which its ``plain`` says whether
    they are the plain line diff)."""
    old_lines, new_lines = matcher.sides
    rows: list[Row] = []
    opcodes = matcher.get_opcodes()
    budget = matcher.budget  # what matching the lines left for marking characters
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            rows.extend(_equal(i, j, old_lines[i]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True))
            continue
        for i, j in zip_longest(range(i1, i2), range(j1, j2)):
            if i is None:
                rows.append(_inserted(j, new_lines[j]))
            elif j is None:
                rows.append(_deleted(i, old_lines[i]))
            else:
                old, new, budget = _marked(old_lines[i], new_lines[j], budget)
                rows.append(Row("replace", i + 1, old, j + 1, new))
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
    return [_section(title, old.get(title, []), new.get(title, []), context=context) for title in titles]


def _section(title: str, old_lines: Sequence[str], new_lines: Sequence[str], *, context: int) -> Section:
    matcher = line_matcher(old_lines, new_lines, autojunk=False)
    rows = _matched_rows(matcher)
    line_diff = matcher.plain and any(row.kind != "equal" for row in rows)  # as unified_diff says it
    return Section(title, _cut(collapse(rows, context=context)), line_diff)


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


def _marked(old: str, new: str, budget: int) -> tuple[tuple[Segment, ...], tuple[Segment, ...], int]:
    """Two paired lines with the characters that changed marked, and what is left of the budget.
    Lines that differ too much, or once the budget is spent, are marked whole."""
    if budget < 0:
        return _whole(old), _whole(new), budget
    matcher = BoundedMatcher(old, new, budget=budget, autojunk=False)
    if matcher.ratio() < FRAGMENT_RATIO or matcher.plain:
        return _whole(old), _whole(new), matcher.budget
    old_parts: list[Segment] = []
    new_parts: list[Segment] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i2 > i1:
            old_parts.append(Segment(old[i1:i2], tag != "equal"))
        if j2 > j1:
            new_parts.append(Segment(new[j1:j2], tag != "equal"))
    return tuple(old_parts), tuple(new_parts), matcher.budget
