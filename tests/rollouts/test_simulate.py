"""`manage.py simulate` drives traffic through the real resolve and events endpoints."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.core.management import call_command

from outcomes.selectors import arm_stats
from outcomes.services import outcome_minutes_flush
from rollouts.services import rollout_create
from rollouts.traffic_model import ArmBehaviour, late_score, outcome_event
from tests.factories import actor_for, make_key, make_prompt

RESOLVED = {"name": "support.answer", "version": 2, "rollout_id": 7, "arm": "candidate"}


def test_simulated_error_share_follows_the_arms_error_rate() -> None:
    rng = random.Random(3)
    behaviour = ArmBehaviour(error_rate=0.2)

    events = [
        outcome_event(rng=rng, behaviour=behaviour, resolved=RESOLVED, ts="2026-11-23T12:00:00Z")
        for _ in range(10_000)
    ]

    errors = sum(event["error"] for event in events)
    assert abs(errors / 10_000 - 0.2) < 5 * (0.2 * 0.8 / 10_000) ** 0.5
    assert all(event["error_type"] == ("ProviderError" if event["error"] else None) for event in events)
    assert len({event["event_id"] for event in events}) == 10_000


def test_simulated_latency_median_is_the_arms_median() -> None:
    rng = random.Random(4)
    behaviour = ArmBehaviour(latency_median_ms=300.0, latency_sigma=0.5)

    latencies = sorted(
        outcome_event(rng=rng, behaviour=behaviour, resolved=RESOLVED, ts="2026-11-23T12:00:00Z")[
            "latency_ms"
        ]
        for _ in range(10_001)
    )

    assert 285 < latencies[5_000] < 315


@pytest.mark.django_db(transaction=True)
def test_simulate_sends_each_arm_through_resolve_and_events(live_server: Any, alice: Any) -> None:
    make_prompt(alice, versions=2)
    rollout = rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=[
            {"percent": 50, "min_duration_s": 600, "min_samples": 200},
            {"percent": 100, "min_duration_s": 0, "min_samples": 0},
        ],
    )
    key = make_key(alice, "read,ingest")

    call_command(
        "simulate",
        "support.answer",
        base_url=live_server.url,
        api_key=key,
        rate=100,
        duration=3,
        seed=1,
        candidate_error_rate=1.0,
        baseline_error_rate=0.0,
    )
    outcome_minutes_flush()

    arms = arm_stats(rollout_id=rollout.pk)
    assert arms["baseline"].samples >= 10 and arms["candidate"].samples >= 10
    assert arms["baseline"].errors == 0
    assert arms["candidate"].errors == arms["candidate"].samples


def test_a_late_score_takes_the_calls_scores_and_names_the_call() -> None:
    rng = random.Random(5)
    call = outcome_event(
        rng=rng, behaviour=ArmBehaviour(error_rate=0.0), resolved=RESOLVED, ts="2026-11-23T12:00:00Z"
    )
    scores = dict(call["scores"])

    score = late_score(rng=rng, event=call)

    assert score is not None and set(score) == {"event_id", "of_event", "scores"}
    assert (score["of_event"], score["scores"], call["scores"]) == (call["event_id"], scores, {})
    assert score["event_id"] != call["event_id"]
    assert late_score(rng=rng, event=call) is None  # nothing left to score


@pytest.mark.django_db(transaction=True)
def test_simulate_with_late_scores_sends_scores_apart_and_they_count(live_server: Any, alice: Any) -> None:
    # given a running rollout whose candidate scores 0.3 below the baseline
    make_prompt(alice, versions=2)
    rollout = rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=[
            {"percent": 50, "min_duration_s": 600, "min_samples": 200},
            {"percent": 100, "min_duration_s": 0, "min_samples": 0},
        ],
    )

    # when simulate sends the scores as late events, delayed up to a second
    call_command(
        "simulate",
        "support.answer",
        base_url=live_server.url,
        api_key=make_key(alice, "read,ingest"),
        rate=100,
        duration=3,
        seed=2,
        baseline_error_rate=0.0,
        candidate_error_rate=0.0,
        candidate_score=0.5,
        late_scores=True,
        late_delay=1.0,
    )
    outcome_minutes_flush()

    # then every call got its score, in its own arm
    arms = arm_stats(rollout_id=rollout.pk)
    for arm in ("baseline", "candidate"):
        assert arms[arm].samples >= 10
        assert arms[arm].score("helpfulness").count == arms[arm].samples
    assert arms["baseline"].score("helpfulness").mean - arms["candidate"].score("helpfulness").mean > 0.15
