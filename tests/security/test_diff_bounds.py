"""Comparing two versions stays cheap whatever a writer stores. Two 256 KB versions (one long
line each, or thousands of short lines) used to cost about an hour of CPU per view of the admin's
compare page, and 16 KB of one short line repeated minutes; a run of 100 distinct short lines,
repeated, cost the API's diff about 45 minutes at 256 KB (and its 64 KB config 11 s)."""

from __future__ import annotations

import random
import time

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from registry.diff import LINE_DIFF_ABOVE, MAX_ROWS, Segment, compare, side_by_side
from registry.services import version_create
from tests.factories import actor_for, make_prompt

SIZE = 256 * 1024
URL = "/api/v1/prompts/support.answer/versions"


def scrambled(seed: int, *, alphabet: str) -> str:
    chooser = random.Random(seed)
    return "".join(chooser.choice(alphabet) for _ in range(SIZE))


def repeated_runs(size: int, *, distinct: int = 100) -> tuple[str, str]:
    """Two texts of at most ``size`` characters that send difflib searching the same lines over
    and over: a run of ``distinct`` short lines, repeated, each time followed by a line only one
    side has (100 distinct lines keep each under difflib's 1% "popular line" cut)."""
    run = "".join(f"{n}\n" for n in range(distinct))
    times = size // (len(run) + 2)
    return (run + "x\n") * times, (run + "y\n") * times


def costly_config(marker: str) -> dict[str, list[int | str]]:
    """A config of 62 KB of JSON (126 KB, 16,000 lines once indented) built the same way."""
    return {"items": [n % 100 if n % 101 else marker for n in range(16_000)]}


@pytest.mark.django_db
@pytest.mark.parametrize("size", [SIZE, LINE_DIFF_ABOVE // 2 - 100], ids=["256 KB", "64 KiB together"])
def test_the_api_diff_of_two_costly_versions_answers_at_once_as_a_plain_line_diff(
    alice, client_with_key, size
):
    make_prompt(alice, name="support.answer", versions=0)
    api = client_with_key(alice, "write")
    old, new = repeated_runs(size)
    for template, marker in ((old, "x"), (new, "y")):
        response = api.post(URL, {"template": template, "model": "m", "config": costly_config(marker)})
        assert response.status_code == 201, response.json()
    started = time.perf_counter()

    response = api.get(f"{URL}/2/diff", {"against": 1})

    assert response.status_code == 200
    assert time.perf_counter() - started < 5.0
    body = response.json()
    assert body["line_diff"] is True
    lines = body["content_diff"].splitlines()[2:]
    assert [line[1:] for line in lines if line[0] == "-"] == old.splitlines()[100:]  # after the common run
    assert [line[1:] for line in lines if line[0] == "+"] == new.splitlines()[100:]
    assert len(body["content_diff"]) <= 2 * (len(old) + len(new))


@pytest.mark.django_db
@pytest.mark.parametrize("alphabet", ["ab ", "ab \n"], ids=["one long line", "many short lines"])
def test_comparing_two_256_kb_versions_answers_at_once(alice, alphabet):
    prompt = make_prompt(alice, versions=0)
    for seed in (1, 2):
        version_create(
            actor=actor_for(alice),
            prompt_name=prompt.name,
            template=scrambled(seed, alphabet=alphabet),
            model="m",
        )
    client = Client()
    client.force_login(alice)
    started = time.perf_counter()

    response = client.get(reverse("admin:registry_prompt_diff", args=[prompt.pk]), {"old": "1", "new": "2"})

    assert response.status_code == 200
    assert time.perf_counter() - started < 5.0


def test_one_short_line_repeated_within_the_limit_is_compared_at_once():
    old, new = repeated_runs(LINE_DIFF_ABOVE // 2 - 100, distinct=1)
    started = time.perf_counter()

    rows = side_by_side(old.splitlines(), new.splitlines())

    assert time.perf_counter() - started < 2.0
    assert rows[0].kind == "equal"
    assert all(row.kind == "replace" and row.old == (Segment(row.old[0].text, True),) for row in rows[1:])
    assert len(rows) == len(old.splitlines())


def test_a_line_of_one_pair_of_characters_repeated_is_marked_at_once():
    started = time.perf_counter()

    [row] = side_by_side(["0x" * 1_000], ["0y" * 1_000])

    assert time.perf_counter() - started < 1.0
    assert (row.old, row.new) == ((Segment("0x" * 1_000, True),), (Segment("0y" * 1_000, True),))


def test_a_long_changed_line_within_the_limit_is_compared_at_once():
    old, new = scrambled(1, alphabet="ab ")[:30_000], scrambled(2, alphabet="ab ")[:30_000]
    started = time.perf_counter()

    [row] = side_by_side([old], [new])

    assert row.kind == "replace"
    assert time.perf_counter() - started < 1.0


big_lines = st.lists(st.sampled_from(["a" * 5_000, "b" * 5_000, "c", ""]), min_size=7, max_size=30)


@given(big_lines, big_lines)
def test_the_line_diff_over_the_limit_still_holds_both_versions_line_by_line(old, new):
    rows = side_by_side(old, new)

    for side, lines in (("old", old), ("new", new)):
        assert [
            "".join(part.text for part in getattr(row, side))
            for row in rows
            if getattr(row, f"{side}_number")
        ] == lines
        assert [getattr(row, f"{side}_number") for row in rows if getattr(row, f"{side}_number")] == list(
            range(1, len(lines) + 1)
        )
    if sum(map(len, old + new)) > LINE_DIFF_ABOVE:
        assert all(not part.changed for row in rows if row.kind == "equal" for part in row.old)


def test_a_comparison_shows_its_first_rows_and_counts_the_rest():
    old, new = [f"old {n}" for n in range(5_000)], [f"new {n}" for n in range(5_000)]

    [section] = compare({"Template": old}, {"Template": new})

    assert len(section.rows) == MAX_ROWS + 1
    assert (section.rows[-1].kind, section.rows[-1].skipped) == ("cut", 5_000 - MAX_ROWS)
