"""The fast path reads its query string as ``parse_qsl(query, keep_blank_values=True)`` does,
on any query, however it is encoded."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from hypothesis import given
from hypothesis import strategies as st

from serving.fast_path import query_pairs

QUERY_CHARACTERS = st.sampled_from(list("ab=&%+;.-_ 2F41é~") + ["%2", "%zz", "%C3%A9", "%26", "%3D"])


@given(st.lists(QUERY_CHARACTERS, max_size=40).map("".join))
def test_any_query_string_gives_the_pairs_parse_qsl_gives(query):
    assert query_pairs(query) == parse_qsl(query, keep_blank_values=True)


@given(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=8))
def test_encoded_pairs_come_back_as_they_were(pairs):
    assert query_pairs(urlencode(pairs)) == pairs
