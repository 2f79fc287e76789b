"""The fast path reads its query string's unit and attributes as ``parse_qsl(query,
keep_blank_values=True)`` reads them, on any query, however it is encoded."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from hypothesis import given
from hypothesis import strategies as st

from serving.fast_path import unit_and_attributes

QUERY_CHARACTERS = st.sampled_from(
    list("ab=&%+;.-_ 2F41é~") + ["%2", "%zz", "%C3%A9", "%26", "%3D", "unit", "attr.", "attr%2E"]
)


@given(st.lists(QUERY_CHARACTERS, max_size=40).map("".join))
def test_any_query_string_gives_the_unit_and_attributes_parse_qsl_gives(query):
    pairs = parse_qsl(query, keep_blank_values=True)
    units = [value for field, value in pairs if field == "unit"]

    assert unit_and_attributes(query) == (
        units[-1] if units else None,
        [(field, value) for field, value in pairs if field.startswith("attr.")],
    )


@given(
    st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=8),
    st.text(max_size=10),
    st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=4),
)
def test_encoded_unit_and_attributes_come_back_as_they_were(others, unit, attributes):
    named = [(f"attr.{name}", value) for name, value in attributes]
    others = [(field, value) for field, value in others if field != "unit" and not field.startswith("attr.")]

    assert unit_and_attributes(urlencode([*others, ("unit", unit), *named])) == (unit, named)
