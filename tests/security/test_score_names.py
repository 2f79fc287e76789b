"""An ingest key cannot make a rollout carry unbounded score names, nor hold its steps with names
the baseline never reports: every distinct name is a statistic each evaluation reads, and with
the default `score:*` gate one bogus name used to keep every step waiting for data until it
paused."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from core.redis_client import get_redis
from outcomes.errors import InvalidEvents
from outcomes.models import OutcomeMinute
from outcomes.pending import PREFIX, pending_count
from outcomes.services import events_ingest, outcome_minutes_flush
from rollouts.controller import rollout_evaluate
from rollouts.models import Rollout
from rollouts.services import rollout_create
from tests.factories import actor_for, make_prompt
from tests.rollouts.outcomes import OBSERVE_TRAFFIC, ingest_client, report

pytestmark = pytest.mark.django_db
PLAN = [
    {"percent": 10, "min_duration_s": 0, "min_samples": 300},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.fixture(autouse=True)
def _clean_ingest_state() -> Iterator[None]:
    """Redis outlives each test's rolled-back transaction."""
    yield
    client = get_redis()
    keys = list(client.scan_iter(match=PREFIX + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def rollout(alice: Any) -> Rollout:
    make_prompt(alice, versions=2)
    return rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=PLAN,
        gates=[{"metric": "score:*", "max_drop_abs": 0.05}],
        traffic=OBSERVE_TRAFFIC,  # the arms get equal reports, whatever the split
    )


def event(rollout: Rollout, arm: str = "candidate", **scores: float) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "prompt": "support.answer",
        "version": rollout.candidate.version if arm == "candidate" else rollout.baseline.version,
        "rollout_id": rollout.pk,
        "arm": arm,
        "latency_ms": 800,
        "scores": scores,
        "ts": (rollout.step_started_at + timedelta(minutes=1)).isoformat(),
    }


def send(client: APIClient, events: list[dict[str, Any]]) -> Any:
    return client.post("/api/v1/events", {"events": events}, format="json")


def test_a_21st_score_name_for_a_rollout_is_refused_naming_the_event(alice, rollout):
    attacker = ingest_client(alice)
    assert send(attacker, [event(rollout, **{f"bogus{n}": 0.5}) for n in range(20)]).status_code == 202
    outcome_minutes_flush()
    rows = OutcomeMinute.objects.count()

    refused = send(attacker, [event(rollout, bogus3=0.5), event(rollout, bogus20=0.5)])

    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == [
        {
            "index": 1,
            "field": "scores.bogus20",
            "reason": f"rollout {rollout.pk} already has 20 score names; no new one is taken",
        }
    ]
    assert pending_count() == 0
    outcome_minutes_flush()
    assert OutcomeMinute.objects.count() == rows
    # what the SDK does next: drop the named events and send the rest
    assert send(attacker, [event(rollout, bogus3=0.5)]).status_code == 202


def test_a_batch_bringing_21_names_at_once_is_refused_whole(alice, rollout):
    twenty = {f"bogus{n}": 0.5 for n in range(20)}

    refused = send(ingest_client(alice), [event(rollout, **twenty), event(rollout, bogus20=0.5, bogus0=0.1)])

    assert refused.status_code == 400
    assert [(p["index"], p["field"]) for p in refused.json()["error"]["details"]] == [(1, "scores.bogus20")]
    assert pending_count() == 0


def test_score_names_only_the_candidate_reports_cannot_hold_a_step(alice, rollout):
    attacker, events = ingest_client(alice), ingest_client(alice)
    report(events, rollout, "baseline", 300)
    report(events, rollout, "candidate", 300)
    names = {f"bogus{n}": 0.5 for n in range(20)}
    assert send(attacker, [event(rollout, **names)]).status_code == 202
    outcome_minutes_flush()

    decision = rollout_evaluate(rollout_id=rollout.pk)

    assert decision is not None
    assert decision.action == "advance"
    assert not [v for v in decision.verdicts if v.metric.startswith("score:")]


@pytest.mark.django_db(transaction=True)
def test_two_batches_at_once_cannot_together_pass_the_limit(rollout):
    bodies = [
        json.dumps({"events": [event(rollout, **{f"{side}{n}": 0.5 for n in range(11)})]}).encode()
        for side in ("left", "right")
    ]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def ingest_at_once(body: bytes) -> None:
        barrier.wait()
        try:
            events_ingest(body=body, now=time.time())
            outcomes.append("accepted")
        except InvalidEvents:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest_at_once, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["accepted", "refused"]
    assert get_redis().hlen(f"{PREFIX}score_index:{rollout.pk}") == 11
