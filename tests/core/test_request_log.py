"""One log line per request on both resolve paths (Django's view and the WSGI fast path with a
Bearer key): the trace id from a valid ``traceparent`` or a new one, returned in the answer;
the route's pattern, the key's prefix; never the key, the unit, the query string."""

from __future__ import annotations

import re
import uuid

import pytest
from django.test import Client

from core import log_lines
from tests.factories import make_key, make_prompt
from tests.serving.clients import django_get, fast_get

URL = "/api/v1/prompts/support.answer/resolve"
ROUTE = "api/v1/prompts/<str:name>/resolve"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


@pytest.fixture(params=["django_view", "wsgi_fast_path"])
def get(request):
    return {"django_view": django_get, "wsgi_fast_path": fast_get}[request.param]


@pytest.mark.django_db
def test_a_resolve_is_one_line_in_the_callers_trace_with_the_route_and_key_prefix(alice, get, captured_lines):
    make_prompt(alice)
    key = make_key(alice, "read")
    unit = f"unit-{uuid.uuid4()}"

    answer = get(
        f"{URL}?unit={unit}", key=key, headers={"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}
    )

    assert answer.status_code == 200
    trace_id, span_id = TRACEPARENT.match(answer.headers["traceparent"]).groups()
    assert trace_id == CALLER_TRACE
    assert span_id != "00f067aa0ba902b7"
    assert answer.headers["x-request-id"] == span_id
    [line] = captured_lines.requests()
    assert line == {
        "time": line["time"],
        "level": "info",
        "request_id": span_id,
        "trace_id": CALLER_TRACE,
        "route": ROUTE,
        "method": "GET",
        "status": 200,
        "duration_ms": line["duration_ms"],
        "key_prefix": key[:11],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert 0 < line["duration_ms"] < 5000
    assert key[:11].startswith("pr_") and len(key) > 11
    written = captured_lines.text()
    assert key not in written and unit not in written and "unit=" not in written


@pytest.mark.django_db
@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "",
        "garbage",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # an all-zero trace id is invalid
        f"00-{CALLER_TRACE}-{'0' * 16}-01",  # as is an all-zero parent
        f"ff-{CALLER_TRACE}-00f067aa0ba902b7-01",  # version ff is forbidden
        f"00-{CALLER_TRACE.upper()}-00f067aa0ba902b7-01",  # upper case is not W3C's
        f"00-{CALLER_TRACE}-00f067aa0ba902b7-01-extra",  # version 00 has four parts
    ],
)
def test_without_a_valid_traceparent_a_new_trace_is_made_and_returned(
    alice, get, captured_lines, traceparent
):
    make_prompt(alice)
    headers = {} if traceparent is None else {"traceparent": traceparent}

    answer = get(URL, key=make_key(alice, "read"), headers=headers)

    trace_id, span_id = TRACEPARENT.match(answer.headers["traceparent"]).groups()
    assert trace_id not in (CALLER_TRACE, "0" * 32)
    [line] = captured_lines.requests()
    assert (line["trace_id"], line["request_id"]) == (trace_id, span_id)


@pytest.mark.django_db
def test_a_later_traceparent_version_is_read_as_version_00(alice, get, captured_lines):
    make_prompt(alice)

    answer = get(
        URL, key=make_key(alice, "read"), headers={"traceparent": f"01-{CALLER_TRACE}-00f067aa0ba902b7-00-x"}
    )

    assert answer.headers["traceparent"].startswith(f"00-{CALLER_TRACE}-")
    assert answer.headers["traceparent"].endswith("-00")  # the caller's flags (not sampled) kept


@pytest.mark.django_db
def test_an_unknown_key_is_logged_without_any_prefix(alice, get, captured_lines):
    make_prompt(alice)
    unknown = f"pr_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}"

    answer = get(URL, key=unknown)

    assert answer.status_code == 401
    [line] = captured_lines.requests()
    assert (line["status"], line["key_prefix"], line["route"]) == (401, None, ROUTE)
    assert unknown[:11] not in captured_lines.text()


@pytest.mark.django_db
def test_other_views_log_their_pattern_never_the_path_they_were_given(alice, captured_lines):
    key = make_key(alice, "read")
    name = f"name-{uuid.uuid4()}"

    answer = Client().get(f"/api/v1/prompts/{name}?secret=1", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert answer.status_code == 404
    [line] = captured_lines.requests()
    assert line["route"] == "api/v1/prompts/<str:name>"
    assert (line["status"], line["key_prefix"]) == (404, key[:11])
    assert "secret=1" not in captured_lines.text()


@pytest.mark.django_db
def test_a_path_no_view_matches_is_logged_without_a_route(captured_lines):
    answer = Client().get(f"/nothing-{uuid.uuid4()}")

    assert answer.status_code == 404
    assert [line["route"] for line in captured_lines.requests()] == [None]
    assert TRACEPARENT.match(answer.headers["traceparent"])


@pytest.mark.django_db
def test_text_format_is_one_line_with_the_same_fields(alice, captured_lines, monkeypatch):
    monkeypatch.setattr(log_lines.buffer, "line_format", "text")
    make_prompt(alice)
    key = make_key(alice, "read")

    answer = fast_get(URL, key=key)

    trace_id, span_id = TRACEPARENT.match(answer.headers["traceparent"]).groups()
    [text] = captured_lines.text().splitlines()
    assert re.fullmatch(
        rf"\S+Z INFO request_id={span_id} trace_id={trace_id} route={re.escape(ROUTE)} method=GET "
        rf"status=200 duration_ms=[\d.]+ key_prefix={key[:11]}",
        text,
    )
