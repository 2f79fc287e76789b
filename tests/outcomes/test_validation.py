from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outcomes.validation import MAX_EVENTS, BatchRejected, parse_batch

NOW = 1_795_000_000.0  # arrival time, Unix seconds


def item(**fields: Any) -> dict[str, Any]:
    body = {"event_id": str(uuid.uuid4()), "prompt": "support.answer", "version": 2}
    body.update(fields)
    return body


def parse(*items: Any) -> tuple[list, list]:
    """The calls' events and the problems (late scores: see parse_late)."""
    events, _, problems = parse_batch(orjson.dumps({"events": list(items)}), now=NOW)
    return events, problems


def parse_late(*items: Any) -> tuple[list, list]:
    _, late, problems = parse_batch(orjson.dumps({"events": list(items)}), now=NOW)
    return late, problems


def test_only_event_id_prompt_and_version_are_required():
    events, problems = parse(item())

    assert problems == []
    [event] = events
    assert (event.prompt, event.version, event.error, event.scores) == ("support.answer", 2, False, {})
    assert event.minute == int(NOW // 60)


def test_the_event_id_is_kept_as_the_uuids_sixteen_bytes_whatever_its_case():
    raw = uuid.uuid4()

    events, _ = parse(item(event_id=str(raw).upper()))

    assert events[0].event_id == raw.bytes


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event_id": None}, "event_id"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"event_id": "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"}, "event_id"),
        ({"event_id": "0123456 -89ab-cdef-0123-456789abcdef"}, "event_id"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "Bad Name"}, "prompt"),
        ({"version": "2"}, "version"),
        ({"version": 0}, "version"),
        ({"version": True}, "version"),
        ({"rollout_id": 0, "arm": "candidate"}, "rollout_id"),
        ({"rollout_id": "7", "arm": "candidate"}, "rollout_id"),
        ({"rollout_id": 7}, "arm"),
        ({"rollout_id": 7, "arm": "production"}, "arm"),
        ({"arm": "candidate"}, "arm"),
        ({"latency_ms": -0.1}, "latency_ms"),
        ({"latency_ms": "12"}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
        ({"latency_ms": 1e12}, "latency_ms"),
        ({"error": "yes"}, "error"),
        ({"error": 1}, "error"),
        ({"error_type": "has space"}, "error_type"),
        ({"error_type": "x" * 65}, "error_type"),
        ({"error_type": ""}, "error_type"),
        ({"cost_usd": -1}, "cost_usd"),
        ({"input_tokens": 1.5}, "input_tokens"),
        ({"output_tokens": -1}, "output_tokens"),
        ({"scores": [0.5]}, "scores"),
        ({"scores": {"Helpfulness": 0.5}}, "scores"),
        ({"scores": {"helpfulness": "high"}}, "scores.helpfulness"),
        ({"scores": {"helpfulness": None}}, "scores.helpfulness"),
        ({"scores": {f"s{i}": 1 for i in range(33)}}, "scores"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": 1795000000}, "ts"),
    ],
)
def test_an_invalid_field_is_reported_with_its_index_and_name(fields, field):
    events, problems = parse(item(), item(**fields))

    assert [e.index for e in events] == [0]
    assert [(p["index"], p["field"]) for p in problems] == [(1, field)]
    assert problems[0]["reason"]


def test_every_problem_of_an_event_is_reported():
    _, problems = parse(item(event_id="x", version=0, latency_ms=-1))

    assert [p["field"] for p in problems] == ["event_id", "version", "latency_ms"]


@pytest.mark.parametrize(
    "fields",
    [
        {"rollout_id": 7, "arm": "baseline"},
        {"rollout_id": None, "arm": "production"},
        {"arm": None},
        {"error": True, "error_type": "rate_limit:openai.429"},
        {"latency_ms": 0, "cost_usd": 0, "input_tokens": 0, "output_tokens": 0},
        {"scores": {"helpfulness": -3, "a.b-c_d": 0.5}},
        {"ts": "2026-11-22T18:00:00+02:00"},
        {"unknown_field": "ignored", "user_id": "never stored"},
    ],
)
def test_valid_fields_are_accepted(fields):
    events, problems = parse(item(**fields))

    assert problems == []
    assert len(events) == 1


def test_ts_places_an_event_in_its_minute_clamped_to_five_minutes_of_arrival():
    events, _ = parse(
        item(ts="2020-01-01T00:00:00Z"),  # long before arrival
        item(ts=_iso(NOW - 125)),
        item(ts=_iso(NOW + 10_000)),
        item(ts=_iso(NOW + 30).replace("+00:00", "")),  # no offset: UTC
    )

    assert [e.minute for e in events] == [
        int((NOW - 300) // 60),
        int((NOW - 125) // 60),
        int((NOW + 300) // 60),
        int((NOW + 30) // 60),
    ]


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b"{}", b'{"events": 3}', b'{"events": {"a": 1}}'])
def test_a_body_that_is_not_an_object_with_an_events_list_is_rejected(body):
    with pytest.raises(BatchRejected) as raised:
        parse_batch(body, now=NOW)

    assert not raised.value.too_large


def test_more_than_the_maximum_number_of_events_is_rejected_as_too_large():
    with pytest.raises(BatchRejected) as raised:
        parse(*[item() for _ in range(MAX_EVENTS + 1)])

    assert raised.value.too_large


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.sampled_from(
    [
        "event_id",
        "prompt",
        "version",
        "rollout_id",
        "arm",
        "latency_ms",
        "error",
        "error_type",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "scores",
        "ts",
    ]
)


@given(st.lists(st.dictionaries(_fields, _json, max_size=13) | _json, max_size=6))
def test_any_json_items_give_events_or_problems_never_an_exception(items):
    events, problems = parse(*items)

    assert len(events) + len({p["index"] for p in problems}) == len(items)
    for p in problems:
        assert set(p) == {"index", "field", "reason"}
