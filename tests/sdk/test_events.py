import email.message
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from promptramp.events import Event, EventSender, outcome_event, retry_after_seconds
from promptramp.result import ResolvedPrompt
from promptramp.transport import Reply

RESULT = ResolvedPrompt(
    "support.answer", 4, "text", "Hi", None, "gpt-4o-mini", {}, [], "candidate", 7, 123, True
)


class Recorder:
    """A stand-in for the HTTP post: records each batch and answers 202."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, batch: list[Event], *, batch_id: str, exposures: list[dict[str, Any]]) -> Reply:
        self.batches.append(list(batch))
        self.bodies.append({"batch_id": batch_id, "events": list(batch), "exposures": list(exposures)})
        body = json.dumps({"accepted": len(batch), "duplicates": 0}).encode()
        return Reply(202, email.message.Message(), body)


def sender(post: Recorder, capacity: int = 100, batch_size: int = 500) -> EventSender:
    return EventSender(post, batch_size=batch_size, flush_interval=3600, capacity=capacity, max_backoff=1)


def test_full_buffer_drops_the_oldest_events_and_counts_them() -> None:
    post = Recorder()
    events = sender(post, capacity=3)

    for number in range(5):
        events.add({"event_id": str(number)})
    counts_before_flush = events.counts()
    events.close(timeout=5)

    assert (counts_before_flush.dropped, counts_before_flush.pending) == (2, 3)
    assert [event["event_id"] for event in post.batches[0]] == ["2", "3", "4"]
    assert events.counts().accepted == 3


def test_events_go_out_in_batches_of_at_most_batch_size() -> None:
    post = Recorder()
    events = sender(post, capacity=1000, batch_size=4)

    for number in range(10):
        events.add({"event_id": str(number)})
    assert events.flush(timeout=5)

    assert sorted(len(batch) for batch in post.batches)[-1] <= 4
    assert sum(len(batch) for batch in post.batches) == 10
    events.close(timeout=1)


def test_events_added_after_close_are_counted_as_dropped() -> None:
    events = sender(Recorder())
    events.close(timeout=1)

    events.add({"event_id": "late"})

    assert (events.counts().dropped, events.counts().pending) == (1, 0)


def test_an_outcome_event_carries_the_arm_it_was_served() -> None:
    event = outcome_event(
        RESULT,
        latency_ms=812.5,
        cost_usd=0.0021,
        input_tokens=350,
        output_tokens=120,
        scores={"helpfulness": 0.82},
        ts=datetime(2026, 11, 22, 18, 0, tzinfo=UTC),
    )

    assert event | {"event_id": "x"} == {
        "event_id": "x",
        "prompt": "support.answer",
        "version": 4,
        "rollout_id": 7,
        "arm": "candidate",
        "latency_ms": 812.5,
        "error": False,
        "error_type": None,
        "cost_usd": 0.0021,
        "input_tokens": 350,
        "output_tokens": 120,
        "scores": {"helpfulness": 0.82},
        "ts": "2026-11-22T18:00:00.000Z",
    }
    assert len(event["event_id"]) == 36


@pytest.mark.parametrize(
    "figures",
    [
        {"latency_ms": -1},
        {"latency_ms": math.nan},
        {"cost_usd": "0.1"},
        {"input_tokens": 1.5},
        {"output_tokens": -3},
        {"scores": {"helpfulness": math.inf}},
        {"scores": {"helpfulness": True}},
        {"scores": {"": 0.5}},
        {"scores": {"Helpfulness": 0.8}},  # score names are lower case
        {"scores": {f"s{n}": 0.5 for n in range(21)}},  # at most 20 per event
        {"scores": {"helpfulness": 2e9}},
        {"error_type": "Timeout Error"},
        {"latency_ms": 86_400_001},
        {"input_tokens": 10**10},
    ],
)
def test_a_figure_the_server_would_refuse_is_refused_at_once(figures: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        outcome_event(RESULT, **figures)  # type: ignore[arg-type]


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)

    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("0.5") == 0.5
    assert 55 < retry_after_seconds(in_a_minute) <= 60  # type: ignore[operator]
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None


# --- exposures ------------------------------------------------------------------------------


class Scripted(Recorder):
    """Answers with the given replies in turn (then 202), recording every post."""

    def __init__(self, *replies: tuple[int, dict[str, Any]]) -> None:
        super().__init__()
        self.replies = list(replies)

    def __call__(self, batch: list[Event], *, batch_id: str, exposures: list[dict[str, Any]]) -> Reply:
        answer = super().__call__(batch, batch_id=batch_id, exposures=exposures)
        if not self.replies:
            return answer
        status, body = self.replies.pop(0)
        return Reply(status, email.message.Message(), json.dumps(body).encode())


def test_local_resolutions_go_out_per_rollout_arm_and_minute_with_the_next_batch() -> None:
    post = Recorder()
    events = sender(post)

    for _ in range(3):
        events.expose(7, "candidate")
    events.expose(7, "baseline")
    events.expose(8, "baseline")
    assert events.flush(timeout=5)

    (body,) = post.bodies
    minute = int(datetime.now(UTC).timestamp() // 60)
    assert body["events"] == []
    assert sorted((r["rollout_id"], r["arm"], r["count"]) for r in body["exposures"]) == [
        (7, "baseline", 1),
        (7, "candidate", 3),
        (8, "baseline", 1),
    ]
    assert {r["minute"] for r in body["exposures"]} <= {minute - 1, minute}
    assert events.counts().exposures_sent == 5
    events.close(timeout=1)


def test_a_retried_batch_keeps_its_batch_id_and_exposures() -> None:
    post = Scripted((503, {"error": {"code": "unavailable"}}))
    events = EventSender(post, batch_size=500, flush_interval=3600, capacity=100, max_backoff=0.01)
    events.add({"event_id": "1"})
    events.expose(7, "candidate")

    assert events.flush(timeout=5)

    first, second = post.bodies
    assert first == second
    assert first["exposures"][0]["count"] == 1
    assert str(uuid.UUID(first["batch_id"])) == first["batch_id"]
    events.close(timeout=1)


def test_a_refusal_naming_an_exposure_row_drops_it_and_sends_the_rest_at_once() -> None:
    refusal = {
        "error": {"code": "invalid_events", "details": [{"exposure": 0, "field": "exposures[0].rollout_id"}]}
    }
    post = Scripted((400, refusal))
    events = sender(post)
    events.add({"event_id": "1"})
    events.expose(7, "candidate")
    events.expose(9, "candidate")

    assert events.flush(timeout=5)

    first, second = post.bodies
    assert len(first["exposures"]) == 2
    assert second["exposures"] == first["exposures"][1:]
    assert second["events"] == [{"event_id": "1"}]
    assert events.counts().exposures_dropped == 1
    assert events.counts().exposures_sent == 1
    events.close(timeout=1)


def test_every_batch_gets_a_batch_id_of_its_own() -> None:
    post = Recorder()
    events = sender(post, batch_size=1)
    for number in range(3):
        events.add({"event_id": str(number)})
    assert events.flush(timeout=5)

    assert len({body["batch_id"] for body in post.bodies}) == 3
    events.close(timeout=1)
