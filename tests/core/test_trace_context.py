"""trace_of: a valid W3C traceparent keeps the caller's trace; anything else starts a new one; what
is returned is always a valid traceparent naming a new span."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from core.trace_context import trace_of

VALID = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
hex_text = st.text(alphabet="0123456789abcdef", min_size=1)


@st.composite
def traceparents(draw: st.DrawFn) -> tuple[str, str, str, str]:
    trace = draw(
        st.text(alphabet="0123456789abcdef", min_size=32, max_size=32).filter(lambda t: set(t) != {"0"})
    )
    parent = draw(
        st.text(alphabet="0123456789abcdef", min_size=16, max_size=16).filter(lambda p: set(p) != {"0"})
    )
    flags = draw(st.text(alphabet="0123456789abcdef", min_size=2, max_size=2))
    return "00", trace, parent, flags


@given(traceparents())
def test_a_valid_traceparent_keeps_its_trace_and_flags_with_a_new_span(parts):
    version, trace, parent, flags = parts

    context = trace_of(f"{version}-{trace}-{parent}-{flags}")

    assert (context.trace_id, context.flags) == (trace, flags)
    assert context.request_id != parent
    assert VALID.match(context.traceparent())


@given(st.text(max_size=80))
def test_any_other_header_starts_a_new_valid_trace(header):
    context = trace_of(header)

    assert VALID.match(context.traceparent())
    if not re.match(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", header.strip()):
        assert context.trace_id not in header


def test_two_requests_never_share_a_new_trace():
    contexts = [trace_of(None) for _ in range(10_000)]

    assert len({c.trace_id for c in contexts}) == len({c.request_id for c in contexts}) == 10_000
