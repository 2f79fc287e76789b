"""The fast path reads a resolve's query string as Django's view does: ``parse_qsl(query,
keep_blank_values=True)``, the last ``unit``, and the ``attr.NAME`` parameters checked by
``attributes_of`` — on any query, however it is encoded."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationFailed
from serving.attributes import attributes_of, query_unit_and_attributes

QUERY_PARTS = st.sampled_from(
    list("ab=&%+;.-_ 2F41é~")
    + ["%2", "%zz", "%C3%A9", "%26", "%3D", "unit", "attr.", "attr%2E", "A", "v" * 201]
    + [f"&attr.n{number}=" for number in range(24)]
)

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)


@given(st.lists(QUERY_PARTS, max_size=60).map("".join))
def test_any_query_string_gives_the_unit_and_attributes_or_the_refusal_the_view_gives(query):
    pairs = parse_qsl(query, keep_blank_values=True)
    units = [value for field, value in pairs if field == "unit"]
    try:
        attributes = attributes_of((field[5:], value) for field, value in pairs if field.startswith("attr."))
    except ValidationFailed as refused:
        with pytest.raises(ValidationFailed) as raised:
            query_unit_and_attributes(query)
        assert (raised.value.message, raised.value.details) == (refused.message, refused.details)
    else:
        assert query_unit_and_attributes(query) == (units[-1] if units else None, attributes)


@given(
    st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=8),
    st.text(max_size=10),
    st.dictionaries(NAMES, st.text(max_size=10), max_size=4),
)
def test_encoded_unit_and_attributes_come_back_as_they_were(others, unit, attributes):
    others = [(field, value) for field, value in others if field != "unit" and not field.startswith("attr.")]
    named = [(f"attr.{name}", value) for name, value in attributes.items()]

    assert query_unit_and_attributes(urlencode([*others, ("unit", unit), *named])) == (unit, attributes)
