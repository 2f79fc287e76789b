"""The side-by-side diff: the pure rows (registry/side_by_side.py) and the admin page."""

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from core.actors import Actor
from registry.services import version_create
from registry.side_by_side import Segment, collapse, compare, side_by_side, version_sections
from tests.factories import make_prompt

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
        kind="chat",
        template=None,
        messages=[{"role": "system", "content": "Be kind\nand brief"}],
        model="gpt-4o",
        config={"temperature": 0.2},
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


@pytest.mark.django_db
def test_diff_page_shows_production_against_latest_with_the_changed_line_marked(alice):
    prompt = make_prompt(alice, versions=1)
    version_create(
        actor=Actor(user_id=alice.pk, name="alice"),
        prompt_name=prompt.name,
        template="v1: Answer {{question}} for {{customer}} kindly",
        model="gpt-4o-mini",
        config={"temperature": 0.7},
        message="kinder",
    )
    client = Client()
    client.force_login(alice)

    response = client.get(reverse("admin:registry_prompt_diff", args=[prompt.pk]))

    assert response.status_code == 200
    assert (response.context["old"].version, response.context["new"].version) == (1, 2)
    html = response.content.decode()
    assert '<span class="pr-mark"> kindly</span>' in html
    assert html.count('<tr class="pr-diff-replace">') == 2  # the template line and the temperature
    assert 'Model <span class="pr-unchanged">unchanged</span></h2>' in html


@pytest.mark.django_db
def test_diff_page_compares_the_two_versions_chosen(alice):
    prompt = make_prompt(alice, versions=3)
    client = Client()
    client.force_login(alice)

    response = client.get(reverse("admin:registry_prompt_diff", args=[prompt.pk]), {"old": "3", "new": "1"})

    assert (response.context["old"].version, response.context["new"].version) == (3, 1)
    assert '<span class="pr-mark">3</span>' in response.content.decode()
