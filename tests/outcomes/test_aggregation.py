from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from outcomes.aggregation import (
    Increments,
    aggregate,
    increments_merge,
    increments_payload,
    minute_totals,
    parse_key,
    series_key,
)
from outcomes.validation import Event
from rollouts.stats import arm_stats_sum, histogram_from_json
from tests.factories import event_stats

SERIES = [
    series_key(prompt_id=1, version_id=2, rollout_id=7, arm="candidate"),
    series_key(prompt_id=1, version_id=1, rollout_id=7, arm="baseline"),
    series_key(prompt_id=1, version_id=1, rollout_id=None, arm="production"),
]

_maybe_number = st.none() | st.floats(0, 86_400_000, allow_nan=False)
events_strategy = st.lists(
    st.tuples(
        st.sampled_from(SERIES),
        st.builds(
            Event,
            index=st.just(0),
            event_id=st.just(b"\0" * 16),
            prompt=st.just("p"),
            version=st.just(1),
            rollout_id=st.none(),
            arm=st.none(),
            latency_ms=_maybe_number,
            error=st.booleans(),
            error_type=st.none() | st.sampled_from(["timeout", "rate_limit:429"]),
            cost_usd=st.none() | st.floats(0, 10, allow_nan=False),
            input_tokens=st.none() | st.integers(0, 10**6),
            output_tokens=st.none() | st.integers(0, 10**6),
            scores=st.dictionaries(
                st.sampled_from(["helpfulness", "tone"]), st.floats(-1e3, 1e3), max_size=2
            ),
            minute=st.sampled_from([29_000_000, 29_000_001]),
        ),
    ),
    max_size=40,
)


def redis_hash(increments: Increments) -> dict[bytes, bytes]:
    """What HINCRBY / HINCRBYFLOAT leave in a fresh hash: the payload's values, as text."""
    ints, floats = increments_payload({"k": increments})["k"]
    return {name.encode(): str(value).encode() for name, value in {**ints, **floats}.items()}


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def same_increments(a: dict[str, Increments], b: dict[str, Increments]) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        (a_ints, a_floats), (b_ints, b_floats) = a[key], b[key]
        if a_ints != b_ints or a_floats.keys() != b_floats.keys():
            return False
        if not all(close(a_floats[name], b_floats[name]) for name in a_floats):
            return False
    return True


@given(events_strategy, st.lists(st.integers(0, 40), max_size=6))
def test_any_split_of_a_stream_into_batches_adds_up_to_the_whole_stream(stream, cuts):
    # given the stream cut into batches at arbitrary places
    bounds = [0, *sorted(cuts), len(stream)]
    batches = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    # when each batch is aggregated on its own and the increments are added up
    split = increments_merge(aggregate(batch) for batch in batches)

    # then the totals are those of the whole stream at once
    assert same_increments(split, aggregate(stream))


@given(events_strategy)
def test_an_aggregate_read_back_equals_the_sum_of_its_events_stats(stream):
    # given the events of one key aggregated and read back as a row
    for key, increments in aggregate(stream).items():
        totals = minute_totals(redis_hash(increments))
        where = parse_key(key)
        events = [event for series, event in stream if f"{event.minute}:{series}" == key]

        # then the row holds what rollouts.stats makes of those events one by one
        expected = arm_stats_sum(
            event_stats(latency_ms=e.latency_ms, error=e.error, cost_usd=e.cost_usd, scores=e.scores)
            for e in events
        )
        assert where.arm in {"candidate", "baseline", "production"}
        assert totals.samples == expected.samples == len(events)
        assert totals.errors == expected.errors
        assert histogram_from_json(totals.latency_histogram) == expected.histogram
        assert totals.latency_count == expected.latency.count
        assert close(totals.latency_sum, expected.latency.total)
        assert close(totals.latency_sumsq, expected.latency.total_sq)
        assert totals.cost_count == expected.cost.count
        assert close(totals.cost_sum, expected.cost.total)
        assert sorted(totals.scores) == [name for name, _ in expected.scores]
        for name, moments in expected.scores:
            assert totals.scores[name]["count"] == moments.count
            assert close(totals.scores[name]["sum"], moments.total)
        assert totals.input_tokens_sum == sum(e.input_tokens or 0 for e in events)
        assert sum(totals.error_types.values()) == sum(1 for e in events if e.error and e.error_type)


_names = st.sampled_from(
    [b"n", b"ls", b"h:3", b"t:timeout", b"s:tone:c", b"s:tone:q", b"s:tone", b"zz", b"\xff"]
)


@given(st.dictionaries(_names | st.binary(max_size=12), st.binary(max_size=8) | st.just(b"2.5")))
def test_a_hash_that_is_no_aggregate_is_refused_as_a_value_error(fields):
    # a flush sets such a hash aside on ValueError; any other error would stop every flush
    try:
        totals = minute_totals(fields)
    except ValueError:
        return
    assert totals.samples == int(fields.get(b"n", b"0"))


def test_an_aggregate_key_names_its_minute_and_series():
    key = f"29000000:{series_key(prompt_id=3, version_id=9, rollout_id=None, arm='production')}"

    where = parse_key(key)

    assert (where.minute, where.prompt_id, where.version_id, where.rollout_id, where.arm) == (
        29_000_000,
        3,
        9,
        None,
        "production",
    )


def test_float_increments_travel_as_exact_decimal_text():
    ints, floats = increments_payload({"k": ({"n": 1}, {"ls": 0.1 + 0.2})})["k"]

    assert ints == {"n": 1}
    assert float(floats["ls"]) == 0.1 + 0.2
