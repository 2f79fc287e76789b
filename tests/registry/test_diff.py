"""How two versions differ, as unified diffs and side by side (registry/diff.py, pure)."""

import difflib
import re

from hypothesis import given
from hypothesis import strategies as st

from registry.diff import (
    LINE_DIFF_ABOVE,
    NO_NEWLINE,
    BoundedMatcher,
    Segment,
    VersionContent,
    collapse,
    compare,
    content_text,
    diff_lines,
    side_by_side,
    unified_diff,
    version_diff,
    version_sections,
)

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
texts = st.lists(st.sampled_from(["a", "b", "c", "", "{{x}}", "ü"]), max_size=12).map("\n".join) | st.text(
    max_size=40
)


def apply_patch(old: str, patch: str) -> str:
    """Apply a unified diff as `patch` would (enough of it for these diffs)."""
    old_lines = old.split("\n")
    old_lines = [line + "\n" for line in old_lines[:-1]] + ([old_lines[-1]] if old_lines[-1] else [])
    lines = patch.split("\n")[2:]
    result: list[str] = []
    position = 0
    previous = ""
    for line in lines:
        if match := HUNK.match(line):
            start = int(match.group(1)) - (0 if match.group(2) == "0" else 1)
            result.extend(old_lines[position:start])
            position = start
        elif line.startswith("+"):
            result.append(line[1:] + "\n")
        elif line.startswith("-"):
            position += 1
        elif line.startswith(" "):
            result.append(line[1:] + "\n")
            position += 1
        elif line == NO_NEWLINE.rstrip("\n") and previous[:1] in ("+", " "):
            result[-1] = result[-1].removesuffix("\n")
        previous = line
    result.extend(old_lines[position:])
    return "".join(result)


# Lines so long that a few of them are over LINE_DIFF_ABOVE: their diff is the plain line diff.
long_texts = st.lists(st.sampled_from(["a" * 9_000, "b" * 9_000, "c", "", "{{x}}"]), max_size=16).map(
    "\n".join
)


def patch_lines(patch: str, sign: str) -> list[str]:
    return [line[1:] for line in patch.split("\n")[2:] if line.startswith(sign)]


@given(old=texts | long_texts, new=texts | long_texts)
def test_applying_the_content_diff_to_the_old_text_gives_the_new_text(old, new):
    patch, line_diff = unified_diff(old, new, old_name="v1", new_name="v2")

    assert apply_patch(old, patch) == new if patch else old == new
    assert line_diff == (bool(patch) and sum(map(len, diff_lines(old) + diff_lines(new))) > LINE_DIFF_ABOVE)


@given(old=texts | long_texts, new=texts | long_texts)
def test_a_diff_removes_only_old_lines_adds_only_new_ones_and_stays_within_twice_the_texts(old, new):
    patch, _ = unified_diff(old, new, old_name="v1", new_name="v2")

    assert set(patch_lines(patch, "-")) <= set(old.split("\n"))
    assert set(patch_lines(patch, "+")) <= set(new.split("\n"))
    assert len(patch) <= 2 * (len(old) + len(new)) + 2 * len(NO_NEWLINE) + 64


@given(old=texts, new=texts)
def test_within_the_bounds_the_diff_is_the_one_difflib_writes(old, new):
    expected = "".join(difflib.unified_diff(diff_lines(old), diff_lines(new), fromfile="v1", tofile="v2"))

    assert unified_diff(old, new, old_name="v1", new_name="v2") == (expected, False)


items = st.lists(st.sampled_from("abcd"), max_size=40)


@given(a=items, b=items, budget=st.integers(-1, 300))
def test_a_matcher_out_of_budget_keeps_the_common_ends_and_shows_the_rest_changed(a, b, budget):
    matcher = BoundedMatcher(a, b, budget=budget, autojunk=False)

    opcodes = matcher.get_opcodes()

    i = j = 0
    for tag, i1, i2, j1, j2 in opcodes:
        assert (i1, j1) == (i, j)
        assert a[i1:i2] == b[j1:j2] if tag == "equal" else a[i1:i2] or b[j1:j2]
        i, j = i2, j2
    assert (i, j) == (len(a), len(b))
    assert matcher.plain == (matcher.budget < 0)
    if not matcher.plain:
        assert opcodes == difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    else:
        changed = [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in opcodes if tag != "equal"]
        assert len(changed) <= 1
        for i1, i2, j1, j2 in changed:
            assert i1 == j1 and len(a) - i2 == len(b) - j2  # after the common start, before the common end
            assert not (i2 > i1 and j2 > j1) or a[i1] != b[j1] and a[i2 - 1] != b[j2 - 1]


@given(text=texts | long_texts)
def test_a_text_compared_with_itself_has_an_empty_diff(text):
    assert unified_diff(text, text, old_name="v1", new_name="v2") == ("", False)


def test_a_missing_final_newline_shows_in_the_diff():
    patch, _ = unified_diff("a\n", "a", old_name="v1", new_name="v2")

    assert patch == "--- v1\n+++ v2\n@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n"


def test_two_large_texts_differ_as_a_plain_line_diff_keeping_their_common_first_and_last_lines():
    old = "head\n" + "".join(f"old {n}\n" for n in range(10_000)) + "tail\n"
    new = "head\n" + "".join(f"new {n}\n" for n in range(10_000)) + "tail\n"

    patch, line_diff = unified_diff(old, new, old_name="v1", new_name="v2")

    assert line_diff
    assert patch.startswith("--- v1\n+++ v2\n@@ -1,10002 +1,10002 @@\n head\n-old 0\n-old 1\n")
    assert patch.endswith(
        "-old 9999\n+new 0\n" + "".join(f"+new {n}\n" for n in range(1, 10_000)) + " tail\n"
    )


@given(config=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_config_key_order_never_shows_in_a_diff(config):
    reordered = dict(reversed(list(config.items())))
    old = VersionContent(version=1, template="t", messages=None, model="m", config=config)
    new = VersionContent(version=2, template="t", messages=None, model="m", config=reordered)

    diff = version_diff(old, new)

    assert diff.identical and not diff.line_diff
    assert (diff.from_version, diff.to_version) == (1, 2)


def test_chat_messages_are_compared_as_role_headed_blocks():
    old = VersionContent(
        version=1, template=None, messages=[{"role": "system", "content": "Be brief"}], model="m", config={}
    )
    new = VersionContent(
        version=3,
        template=None,
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "{{q}}"}],
        model="m2",
        config={"temperature": 1},
    )

    diff = version_diff(old, new)

    assert content_text(new) == "[system]\nBe brief\n[user]\n{{q}}\n"
    assert diff.content_diff.endswith("+[user]\n+{{q}}\n")
    assert '+  "temperature": 1\n' in diff.config_diff
    assert diff.model_changed and (diff.from_model, diff.to_model) == ("m", "m2")
    assert not diff.identical


# --- side by side ---------------------------------------------------------------------------

lines = st.lists(st.sampled_from(["a", "b", "c", "hello {{x}}", "", "bye"]), max_size=30)


def side_text(rows, side: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "".join(part.text for part in getattr(row, side)) for row in rows if getattr(row, f"{side}_number")
    ]


@given(lines, lines)
def test_the_rows_hold_both_versions_line_by_line_in_order(old, new):
    rows = side_by_side(old, new)

    assert side_text(rows, "old") == old
    assert side_text(rows, "new") == new
    assert [row.old_number for row in rows if row.old_number] == list(range(1, len(old) + 1))
    assert [row.new_number for row in rows if row.new_number] == list(range(1, len(new) + 1))


@given(lines)
def test_a_text_compared_with_itself_has_only_unchanged_rows(text):
    assert {row.kind for row in side_by_side(text, text)} <= {"equal"}


@given(lines, lines)
def test_folding_keeps_every_change_and_counts_the_lines_it_hides(old, new):
    rows = side_by_side(old, new)

    folded = collapse(rows, context=2)

    assert [row for row in folded if row.kind not in ("equal", "skip")] == [
        row for row in rows if row.kind != "equal"
    ]
    assert sum(row.skipped for row in folded) + sum(1 for row in folded if row.kind != "skip") == len(rows)


def test_a_changed_line_marks_only_the_characters_that_changed():
    [row] = side_by_side(["Answer {{question}} politely"], ["Answer {{question}} briefly"])

    assert row.kind == "replace"
    assert [part for part in row.old if part.changed] and [part for part in row.new if part.changed]
    assert row.old[0] == Segment("Answer {{question}} ", False)


def test_sections_of_a_chat_version_show_each_message_under_its_role():
    sections = version_sections(
        VersionContent(
            version=1,
            template=None,
            messages=[{"role": "system", "content": "Be kind\nand brief"}],
            model="gpt-4o",
            config={"temperature": 0.2},
        )
    )

    assert sections == {
        "Messages": ["── system ──", "Be kind", "and brief"],
        "Model": ["gpt-4o"],
        "Config": ["{", '  "temperature": 0.2', "}"],
    }


def test_compare_folds_long_unchanged_stretches():
    old = {"Template": [f"line {n}" for n in range(20)]}
    new = {"Template": [f"line {n}" for n in range(19)] + ["changed"]}

    [section] = compare(old, new, context=3)

    assert section.changed
    assert section.rows[0].kind == "skip" and section.rows[0].skipped == 16
