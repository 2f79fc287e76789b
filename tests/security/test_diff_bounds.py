"""The admin's compare page stays cheap whatever a writer stores: two 256 KB versions (one long
line each, or thousands of short lines) used to cost about an hour of CPU per page view."""

from __future__ import annotations

import random
import time

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from registry.diff import LINE_DIFF_ABOVE, MAX_ROWS, compare, side_by_side
from registry.services import version_create
from tests.factories import actor_for, make_prompt

SIZE = 256 * 1024


def scrambled(seed: int, *, alphabet: str) -> str:
    chooser = random.Random(seed)
    return "".join(chooser.choice(alphabet) for _ in range(SIZE))


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
