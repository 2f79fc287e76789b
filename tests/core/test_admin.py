"""The admin's JSON fields (core.admin.parse_json) refuse exactly what the API's body parser
refuses, whatever is typed: the admin's forms store nothing the API would not."""

from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from core.admin import parse_json
from core.api_input import MAX_NESTING, JSONBodyParser
from core.errors import ValidationFailed

# Strings with NUL characters and lone surrogates (json.dumps writes them as \u escapes), numbers
# JSON has no word for (json.dumps writes NaN and Infinity), integers beyond a double.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(st.characters(blacklist_categories=()), max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=30,
)
nested = st.builds(
    lambda depth, opening, inside: opening * depth + inside + ("]" if opening == "[" else "}") * depth,
    st.integers(min_value=MAX_NESTING - 2, max_value=1100),
    st.sampled_from(["[", '{"a":']),
    st.sampled_from(["", "1", '"\\u0000"']),
)
# What a browser sends from a textarea: any text but lone surrogates.
typed = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


def refused_by_the_api(text: str) -> bool:
    try:
        JSONBodyParser().parse(io.BytesIO(text.encode()))
    except (ParseError, ValidationFailed):
        return True
    return False


def refused_by_the_admin(text: str) -> bool:
    try:
        parse_json(text, "Config")
    except ValidationError:
        return True
    return False


@given(st.one_of(json_values.map(json.dumps), nested, typed))
def test_a_json_field_refuses_exactly_what_the_api_refuses(text):
    assert refused_by_the_admin(text) == refused_by_the_api(text)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[" * 65 + "]" * 65, "Config nests lists and objects more than 64 levels deep."),
        ('{"a": ["\\u0000"]}', "Config may not contain NUL (\\u0000) characters."),
        (
            "[1, -Infinity]",
            "Config is not valid JSON: -Infinity is not a number JSON allows (write a finite number).",
        ),
        ('["é", NaN]', "Config is not valid JSON: NaN is not a number JSON allows (write a finite number)."),
        (
            "{temperature: 1}",
            "Config is not valid JSON: unexpected character, expected a string key (line 1, column 2).",
        ),
    ],
)
def test_the_error_names_the_field_and_what_is_wrong(text, error):
    with pytest.raises(ValidationError) as refused:
        parse_json(text, "Config")

    assert refused.value.messages == [error]
