"""The SDK refuses exactly the event figures the server refuses: both read one table of rules
(sdk/promptramp/event_rules.json); here the SDK's verdict is checked against the server's own
validation for any figures."""

import json
import math
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from outcomes.validation import BatchRejected, parse_batch
from promptramp.events import late_score_event, outcome_event
from promptramp.result import ResolvedPrompt

RESULT = ResolvedPrompt(
    "support.answer", 4, "text", "Hi", None, "gpt-4o-mini", {}, [], "candidate", 7, 12, True
)
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([0, 0.0, 86_400_000, 86_400_000.5, 1_000_000, 1e9, -1e9, 1e9 + 1]),
    st.booleans(),
    st.text(max_size=3),
)
score_names = st.one_of(
    st.sampled_from(
        ["helpfulness", "a", "judge.v2-x_1", "Helpfulness", "", "1st", "a b", "x" * 64, "x" * 65]
    ),
    st.text(max_size=70),
)
score_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**10), max_value=10**10),
    st.booleans(),
    st.none(),
)
error_types = st.one_of(
    st.none(),
    st.sampled_from(["timeout", "RateLimit:429", "a.b-c_d", "Timeout Error", "", "x" * 64, "x" * 65]),
    st.text(max_size=70),
)
tokens = st.one_of(st.none(), st.integers(min_value=-5, max_value=10**10), st.floats(), st.booleans())


@given(
    latency_ms=numbers,
    cost_usd=numbers,
    input_tokens=tokens,
    output_tokens=tokens,
    error_type=error_types,
    scores=st.dictionaries(score_names, score_values, max_size=24),
)
def test_the_sdk_refuses_an_events_figures_exactly_when_the_server_does(
    latency_ms, cost_usd, input_tokens, output_tokens, error_type, scores
):
    figures = {
        "latency_ms": latency_ms,
        "cost_usd": cost_usd,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "error_type": error_type,
        "scores": scores,
    }
    try:
        event = outcome_event(RESULT, ts=NOW, **figures)
        sdk_refuses = False
    except ValueError:
        sdk_refuses = True
        event = {"event_id": "7d0c6f5e-1b7a-4c3e-9a52-2f1e8b9d4c11", "prompt": RESULT.name, "version": 4}
        event |= {"rollout_id": 7, "arm": "candidate", "ts": "2026-12-06T12:00:00Z", **figures}

    body = json.dumps({"events": [event]}).encode()  # as the SDK sends it (NaN is not JSON)
    try:
        _, _, problems = parse_batch(body, now=NOW.timestamp())
        server_refuses = bool(problems)
    except BatchRejected:
        server_refuses = True

    assert sdk_refuses == server_refuses, (figures, problems if not sdk_refuses else None)


def test_a_finite_score_in_range_with_a_lower_case_name_passes_both():
    event = outcome_event(RESULT, ts=NOW, scores={"helpfulness": 0.8, "tone": -1}, latency_ms=math.pi)

    assert parse_batch(json.dumps({"events": [event]}).encode(), now=NOW.timestamp())[2] == []


event_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.sampled_from(
        ["", "not-a-uuid", "7d0c6f5e1b7a4c3e9a522f1e8b9d4c11", "7d0c6f5e-1b7a-4c3e-9a52-2f1e8b9d4c1g"]
    ),
    st.text(max_size=40),
)


@given(of_event=event_ids, scores=st.dictionaries(score_names, score_values, max_size=24))
def test_the_sdk_refuses_a_late_score_exactly_when_the_server_does(of_event, scores):
    try:
        event = late_score_event(of_event, scores)
        sdk_refuses = False
    except ValueError:
        sdk_refuses = True
        event = {"event_id": "7d0c6f5e-1b7a-4c3e-9a52-2f1e8b9d4c11", "of_event": of_event, "scores": scores}

    body = json.dumps({"events": [event]}).encode()
    try:
        _, _, problems = parse_batch(body, now=NOW.timestamp())
        server_refuses = bool(problems)
    except BatchRejected:
        server_refuses = True

    assert sdk_refuses == server_refuses, (of_event, scores, problems if not sdk_refuses else None)
