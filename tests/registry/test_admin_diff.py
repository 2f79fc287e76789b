"""The admin's compare page: two versions side by side (the rows are tested in test_diff.py)."""

import pytest
from django.test import Client
from django.urls import reverse

from core.actors import Actor
from registry.selectors import version_compare
from registry.services import version_create
from tests.factories import make_prompt


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


PLAIN_NOTE = "Shown as a plain line diff: the versions are too large to match line by line."


@pytest.mark.django_db
@pytest.mark.parametrize(("lines", "plain"), [(2_000, True), (20, False)], ids=["over 64 KiB", "small"])
def test_diff_page_says_when_a_section_is_a_plain_line_diff_as_the_api_does(alice, lines, plain):
    prompt = make_prompt(alice, versions=0)
    old = [f"line {n}: answer the question of the customer" for n in range(lines)]
    new = [*old[: lines // 2], "a line only the new version has", *old[lines // 2 :]]
    for template in (old, new):
        version_create(
            actor=Actor(user_id=alice.pk, name="alice"),
            prompt_name=prompt.name,
            template="\n".join(template),
            model="gpt-4o-mini",
        )
    client = Client()
    client.force_login(alice)

    response = client.get(reverse("admin:registry_prompt_diff", args=[prompt.pk]), {"old": "1", "new": "2"})

    assert response.status_code == 200
    assert version_compare(prompt=prompt, number=2, against=1).line_diff is plain
    assert [section.title for section in response.context["sections"] if section.line_diff] == (
        ["Template"] if plain else []
    )
    html = response.content.decode()
    assert html.count(PLAIN_NOTE) == (1 if plain else 0)
    if plain:  # the note is in the template's section, above its rows
        assert (
            html.index('"pr-diff-title">Template')
            < html.index(PLAIN_NOTE)
            < html.index('"pr-diff-title">Model')
        )
