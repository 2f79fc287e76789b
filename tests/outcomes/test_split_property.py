"""End to end through Redis and PostgreSQL: however a stream of events is cut into batches, and
whichever batches are retried, the rollout's arms hold the aggregates of the stream itself."""

from __future__ import annotations

import math
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outcomes.selectors import arm_stats
from outcomes.services import events_ingest, outcome_minutes_flush
from rollouts.stats import ArmStats, arm_stats_sum
from tests.factories import event_stats
from tests.outcomes.conftest import event

NOW = 1_795_000_030.0

outcomes = st.lists(
    st.tuples(
        st.sampled_from(["baseline", "candidate"]),
        st.none() | st.floats(0, 60_000, allow_nan=False),
        st.booleans(),
        st.none() | st.floats(0, 1, allow_nan=False),
        st.dictionaries(st.sampled_from(["helpfulness", "tone"]), st.floats(-1, 1), max_size=2),
        st.integers(-400, 400),  # ts offset from arrival, seconds
    ),
    min_size=1,
    max_size=30,
)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def same_stats(a: ArmStats, b: ArmStats) -> bool:
    return (
        (a.samples, a.errors, a.latency.count, a.cost.count)
        == (b.samples, b.errors, b.latency.count, b.cost.count)
        and a.histogram == b.histogram
        and close(a.latency.total, b.latency.total)
        and close(a.latency.total_sq, b.latency.total_sq)
        and close(a.cost.total, b.cost.total)
        and [n for n, _ in a.scores] == [n for n, _ in b.scores]
        and all(
            ma.count == mb.count and close(ma.total, mb.total) and close(ma.total_sq, mb.total_sq)
            for (_, ma), (_, mb) in zip(a.scores, b.scores, strict=True)
        )
    )


@pytest.mark.django_db
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=outcomes, cuts=st.lists(st.integers(0, 30), max_size=5), retried=st.sets(st.integers(0, 5)))
def test_any_split_and_retries_give_the_aggregates_of_the_whole_stream(setup, stream, cuts, retried):
    # given a stream of events cut into batches, some batches sent twice
    before = arm_stats(rollout_id=setup.rollout.pk)
    events = [
        event(
            setup.rollout,
            arm=arm,
            event_id=str(uuid.uuid4()),
            latency_ms=latency,
            error=error,
            cost_usd=cost,
            scores=scores,
            ts=None if offset == 0 else _iso(NOW + offset),
        )
        for arm, latency, error, cost, scores, offset in stream
    ]
    bounds = [0, *sorted(cuts), len(events)]
    batches = [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    # when they are ingested and flushed
    accepted = 0
    for number, batch in enumerate(batches):
        for _ in range(2 if number in retried else 1):
            accepted += events_ingest(body=orjson.dumps({"events": batch}), now=NOW).accepted
    outcome_minutes_flush()

    # then each arm holds exactly the stream's events, once each
    after = arm_stats(rollout_id=setup.rollout.pk)
    assert accepted == len(events)
    for arm in ("baseline", "candidate"):
        expected = arm_stats_sum(
            [before[arm]]
            + [
                event_stats(latency_ms=latency, error=error, cost_usd=cost, scores=scores)
                for a, latency, error, cost, scores, _ in stream
                if a == arm
            ]
        )
        assert same_stats(after[arm], expected)


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()


score_dicts = st.dictionaries(
    st.sampled_from(["helpfulness", "tone", "accuracy"]), st.floats(-1, 1), max_size=3
)


@pytest.mark.django_db
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from(["baseline", "candidate"]),
            score_dicts,
            st.lists(score_dicts.filter(bool), max_size=3),
        ),
        min_size=1,
        max_size=15,
    ),
    data=st.data(),
)
def test_late_scores_however_batched_count_the_first_value_of_each_name_of_each_call(setup, calls, data):
    # given calls, each with scores of its own and late scores placed anywhere after it
    before = arm_stats(rollout_id=setup.rollout.pk)
    stream: list[dict] = []
    for arm, scores, late_scores in calls:
        call = event(setup.rollout, arm=arm, latency_ms=None, cost_usd=None, scores=scores)
        stream.append(call)
        for late in late_scores:
            at = data.draw(st.integers(stream.index(call) + 1, len(stream)))
            stream.insert(at, {"event_id": str(uuid.uuid4()), "of_event": call["event_id"], "scores": late})
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=5))
    retried = data.draw(st.sets(st.integers(0, 5)))
    bounds = [0, *sorted(cuts), len(stream)]
    batches = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    # when they are ingested (some batches twice) and flushed
    unmatched = 0
    for number, batch in enumerate(batches):
        for _ in range(2 if number in retried else 1):
            unmatched += events_ingest(body=orjson.dumps({"events": batch}), now=NOW).unmatched
    outcome_minutes_flush()

    # then each call holds its own scores and, for the other names, the first late value
    carried: dict[str, dict[str, float]] = {}
    for item in stream:
        if "of_event" in item:
            scores = carried[item["of_event"]]
            for name, value in item["scores"].items():
                scores.setdefault(name, value)
        else:
            carried[item["event_id"]] = dict(item["scores"])
    after = arm_stats(rollout_id=setup.rollout.pk)
    assert unmatched == 0
    for arm in ("baseline", "candidate"):
        expected = arm_stats_sum(
            [before[arm]]
            + [event_stats(scores=carried[item["event_id"]]) for item in stream if item.get("arm") == arm]
        )
        assert same_stats(after[arm], expected)
