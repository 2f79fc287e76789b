"""Render cannot be made to build more than 1 MiB: a writer's template of 52,000 placeholders and
a reader's 64 KiB value would otherwise make a worker build gigabytes."""

from __future__ import annotations

import time
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry import templating
from registry.services import version_create
from tests.factories import actor_for, make_prompt

pytestmark = pytest.mark.django_db
URL = "/api/v1/prompts/amplify/render"


@pytest.fixture
def reader(alice, client_with_key):
    make_prompt(alice, name="amplify", versions=0)
    version_create(actor=actor_for(alice), prompt_name="amplify", template="{{a}}" * 52_000, model="m")
    return client_with_key(alice, "read")


def test_a_template_of_many_placeholders_and_a_large_value_is_refused_at_once(reader):
    started = time.perf_counter()

    response = reader.post(URL, {"unit": "u", "variables": {"a": "x" * 60_000}}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "render_too_large"
    assert "bytes" in response.json()["error"]["message"]
    assert time.perf_counter() - started < 1.0


def test_a_value_over_64_kib_is_refused_even_where_it_is_used_once(alice, client_with_key):
    make_prompt(alice, versions=1)  # "v1: Answer {{question}} for {{customer}}"
    client = client_with_key(alice, "read")
    url = "/api/v1/prompts/support.answer/render"

    refused = client.post(url, {"variables": {"question": "é" * 40_000, "customer": "c"}}, format="json")
    within = client.post(url, {"variables": {"question": "q" * 65_536, "customer": "c"}}, format="json")

    assert refused.status_code == 413  # 80,000 bytes in UTF-8
    assert within.status_code == 200 and len(within.json()["rendered"]) == 65_536 + len("v1: Answer  for c")


def test_what_fits_renders_as_before(reader):
    response = reader.post(URL, {"unit": "u", "variables": {"a": "xy"}}, format="json")

    assert response.status_code == 200
    assert response.json()["rendered"] == "xy" * 52_000


@given(
    pieces=st.lists(
        st.one_of(st.text(max_size=8), st.sampled_from(["{{a}}", "{{ b }}", "{{a}}{{a}}"])), max_size=12
    ),
    a=st.text(max_size=30),
    b=st.integers(),
    limit=st.integers(min_value=0, max_value=200),
)
def test_the_output_bound_holds_exactly(pieces, a, b, limit):
    """Refused exactly when the rendered text would be longer than the bound (in UTF-8 bytes)."""
    template = "".join(pieces)
    values = {"a": a, "b": b}
    expected = templating.PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)
    try:
        with patch.object(templating, "MAX_OUTPUT_BYTES", limit):
            rendered = templating.render(template=template, messages=None, values=values)
    except templating.TooLarge:
        assert len(expected.encode()) > limit
    else:
        assert rendered.content == expected and len(expected.encode()) <= limit
