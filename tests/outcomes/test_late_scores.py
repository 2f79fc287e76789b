"""Late scores through POST /api/v1/events: an event ``{"event_id", "of_event", "scores"}`` adds
scores to its call's arm and minute, and is not a request."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from rest_framework.test import APIClient

from access.services import apikey_create
from core.actors import Actor
from core.redis_client import get_redis
from outcomes.models import OutcomeMinute
from outcomes.pending import GENERATIONS, PREFIX
from outcomes.selectors import arm_stats
from outcomes.services import events_ingest, outcome_minutes_flush
from tests.factories import make_prompt
from tests.outcomes.conftest import event, make_rollout, post_events

pytestmark = pytest.mark.django_db


def late(call: dict[str, Any], **scores: float) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "of_event": call["event_id"], "scores": scores}


def scores_of(rollout_id: int, arm: str, name: str) -> tuple[int, float]:
    outcome_minutes_flush()
    moments = arm_stats(rollout_id=rollout_id)[arm].score(name)
    return moments.count, moments.total


def test_a_late_score_counts_for_its_calls_arm_and_is_not_a_request(setup, ingest_client):
    # given a candidate call without scores, already stored
    call = event(setup.rollout, arm="candidate", scores=None, latency_ms=500.0, error=True, cost_usd=0.01)
    assert post_events(ingest_client, [call]).status_code == 202

    # when its score arrives later, alone
    response = post_events(ingest_client, [late(call, helpfulness=0.25)])

    # then the score counts for the candidate, and nothing else changed
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "unmatched": 0}
    outcome_minutes_flush()
    candidate = arm_stats(rollout_id=setup.rollout.pk)["candidate"]
    assert candidate.score("helpfulness").count == 1
    assert candidate.score("helpfulness").total == pytest.approx(0.25)
    assert (candidate.samples, candidate.errors, candidate.latency.count, candidate.cost.count) == (
        1,
        1,
        1,
        1,
    )
    baseline = arm_stats(rollout_id=setup.rollout.pk)["baseline"]
    assert (baseline.samples, baseline.scores) == (0, ())


def test_a_late_score_is_placed_in_its_calls_minute_not_its_arrival(setup, ingest_client):
    # given a call four minutes ago
    then = datetime.now(UTC) - timedelta(minutes=4)
    call = event(setup.rollout, arm="baseline", scores=None, ts=then.isoformat())
    post_events(ingest_client, [call])
    outcome_minutes_flush()

    # when its late score arrives now
    post_events(ingest_client, [late(call, tone=0.5)])
    outcome_minutes_flush()

    # then it is added to that minute's row, the only row
    [row] = OutcomeMinute.objects.filter(rollout=setup.rollout)
    assert row.minute == then.replace(second=0, microsecond=0)
    assert row.samples == 1
    assert row.scores["tone"]["count"] == 1


def test_a_late_score_of_a_production_call_counts_for_production(setup, ingest_client):
    call = event(None, scores=None)
    post_events(ingest_client, [call])

    response = post_events(ingest_client, [late(call, helpfulness=0.7)])
    outcome_minutes_flush()

    assert response.json()["accepted"] == 1
    [row] = OutcomeMinute.objects.filter(rollout=None)
    assert (row.arm, row.samples, row.scores["helpfulness"]["count"]) == ("production", 1, 1)


def test_a_call_and_its_late_score_in_one_batch_match_whatever_their_order(setup, ingest_client):
    call = event(setup.rollout, scores=None)

    response = post_events(ingest_client, [late(call, helpfulness=0.9), call])

    assert response.json() == {"accepted": 2, "duplicates": 0, "unmatched": 0}
    assert scores_of(setup.rollout.pk, "candidate", "helpfulness") == (1, pytest.approx(0.9))


def test_a_score_name_the_call_carries_keeps_its_first_value(setup, ingest_client):
    # given a call carrying helpfulness 0.8, and a first late tone of 0.4
    call = event(setup.rollout, scores={"helpfulness": 0.8})
    post_events(ingest_client, [call, late(call, tone=0.4)])

    # when later scores repeat both names, and bring a new one
    response = post_events(ingest_client, [late(call, helpfulness=0.1, tone=0.1), late(call, accuracy=1.0)])

    # then they are accepted, but only the new name counts; the first values stand
    assert response.json() == {"accepted": 2, "duplicates": 0, "unmatched": 0}
    assert scores_of(setup.rollout.pk, "candidate", "helpfulness") == (1, pytest.approx(0.8))
    assert scores_of(setup.rollout.pk, "candidate", "tone") == (1, pytest.approx(0.4))
    assert scores_of(setup.rollout.pk, "candidate", "accuracy") == (1, pytest.approx(1.0))


def test_two_late_scores_of_one_name_in_one_batch_count_the_first(setup, ingest_client):
    call = event(setup.rollout, scores=None)
    post_events(ingest_client, [call])

    post_events(ingest_client, [late(call, tone=0.3), late(call, tone=0.9)])

    assert scores_of(setup.rollout.pk, "candidate", "tone") == (1, pytest.approx(0.3))


def test_a_late_score_of_an_unknown_call_is_unmatched_and_not_stored(setup, ingest_client):
    # given a late score of a call never received, and one of another late score
    known = event(setup.rollout, scores=None)
    first = late(known, tone=0.5)
    stray = late({"event_id": str(uuid.uuid4())}, tone=0.5)
    of_a_score = late(first, tone=0.5)

    response = post_events(ingest_client, [known, first, stray, of_a_score])

    # then those two are unmatched, and not remembered: once the call arrives, the retry counts
    assert response.json() == {"accepted": 2, "duplicates": 0, "unmatched": 2}
    orphan_call = {"event_id": stray["of_event"]} | {
        k: v for k, v in event(setup.rollout).items() if k != "event_id"
    }
    post_events(ingest_client, [orphan_call])
    assert post_events(ingest_client, [stray]).json() == {"accepted": 1, "duplicates": 0, "unmatched": 0}


def test_a_resent_late_score_is_a_duplicate(setup, ingest_client):
    call = event(setup.rollout, scores=None)
    post_events(ingest_client, [call])
    score = late(call, helpfulness=0.6)
    post_events(ingest_client, [score])

    resent = post_events(ingest_client, [score, score])

    assert resent.json() == {"accepted": 0, "duplicates": 2, "unmatched": 0}
    assert scores_of(setup.rollout.pk, "candidate", "helpfulness") == (1, pytest.approx(0.6))


def test_a_late_score_carrying_a_calls_fields_or_no_score_is_refused(setup, ingest_client):
    call = event(setup.rollout, scores=None)
    post_events(ingest_client, [call])
    with_latency = late(call, tone=0.5) | {"latency_ms": 10}
    no_scores = late(call)
    bad_of = late(call, tone=0.5) | {"of_event": "not-a-uuid"}

    response = post_events(ingest_client, [late(call, tone=0.5), with_latency, no_scores, bad_of])

    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert [(d["index"], d["field"]) for d in details] == [(1, "latency_ms"), (2, "scores"), (3, "of_event")]
    assert scores_of(setup.rollout.pk, "candidate", "tone") == (0, 0.0)


def test_late_score_names_count_toward_the_rollouts_twenty(setup, ingest_client):
    # given a call, and a rollout whose calls carry 19 score names
    calls = [event(setup.rollout, scores={f"name{i}": 0.5}) for i in range(19)]
    post_events(ingest_client, calls)

    # when late scores bring two new names
    response = post_events(ingest_client, [late(calls[0], tone=0.5), late(calls[1], accuracy=0.5)])

    # then the batch is refused naming the second; nothing of it is stored
    assert response.status_code == 400
    [detail] = response.json()["error"]["details"]
    assert (detail["index"], detail["field"]) == (1, "scores.accuracy")
    assert scores_of(setup.rollout.pk, "candidate", "tone") == (0, 0.0)
    assert post_events(ingest_client, [late(calls[0], tone=0.5)]).json()["accepted"] == 1


def test_a_key_limited_to_prompts_cannot_score_another_prompts_call(setup, alice, client_with_key):
    # given a call of billing.invoice, reported by an unlimited key
    billing = make_rollout(make_prompt(alice, name="billing.invoice", versions=2))
    theirs = event(billing, prompt="billing.invoice")
    ours = event(setup.rollout, scores=None)
    post_events(client_with_key(alice, "ingest"), [theirs, ours])

    # when a key limited to support.* scores it, beside its own call
    _, raw = apikey_create(
        actor=Actor.system(), name="t", user=alice, scopes=["ingest"], prompts=["support.*"]
    )
    limited = APIClient()
    limited.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = post_events(limited, [late(ours, tone=0.5), late(theirs, tone=0.0)])

    # then the batch is refused naming the late score of the other prompt; nothing stored
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "prompt_not_allowed"
    assert [(d["index"], d["field"]) for d in error["details"]] == [(1, "of_event")]
    assert scores_of(setup.rollout.pk, "candidate", "tone") == (0, 0.0)
    assert post_events(limited, [late(ours, tone=0.5)]).json()["accepted"] == 1


def test_a_call_is_remembered_as_long_as_its_event_id(setup, settings):
    # given calls that fill the de-duplication memory past its bound
    settings.PROMPTRAMP_DEDUPE_MAX_IDS = 120
    first = event(setup.rollout, scores=None)
    recent = event(setup.rollout, scores=None)
    t0 = 1_795_000_000.0
    events_ingest(body=orjson.dumps({"events": [first]}), now=t0)
    for step in range(1, 20):
        events_ingest(body=orjson.dumps({"events": [event(setup.rollout) for _ in range(20)]}), now=t0 + step)
    events_ingest(body=orjson.dumps({"events": [recent]}), now=t0 + 20)

    # when both are scored
    result = events_ingest(body=orjson.dumps({"events": [late(first, x=1), late(recent, x=1)]}), now=t0 + 21)

    # then the forgotten one is unmatched (as its id would no longer be a duplicate)
    assert (result.accepted, result.unmatched) == (1, 1)
    assert events_ingest(body=orjson.dumps({"events": [first]}), now=t0 + 22).accepted == 1


def test_concurrent_late_scores_of_one_call_count_one_value_per_name(setup):
    # given a call, and ten batches at once, each with a late score of the same name
    call = event(setup.rollout, scores=None)
    events_ingest(body=orjson.dumps({"events": [call]}), now=time.time())
    barrier = threading.Barrier(10)

    def send(value: float) -> None:
        barrier.wait()
        try:
            events_ingest(body=orjson.dumps({"events": [late(call, tone=value)]}), now=time.time())
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i / 10,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then exactly one value counts
    count, _ = scores_of(setup.rollout.pk, "candidate", "tone")
    assert count == 1


def test_a_remembered_call_takes_a_few_dozen_bytes_of_redis(setup):
    # given 5,000 calls carrying a score, remembered in one generation
    client = get_redis()
    before = client.info("memory")["used_memory"]
    now = time.time()
    for _ in range(10):
        body = orjson.dumps({"events": [event(setup.rollout) for _ in range(500)]})
        events_ingest(body=body, now=now)
    # then each costs well under 120 bytes (a hash field of 16 bytes and a record of 18)
    generations = [key for key in client.scan_iter(match=f"{PREFIX}seen:*")]
    assert 1 <= len(generations) <= GENERATIONS
    used = sum(client.memory_usage(key, samples=0) or 0 for key in generations)
    print(f"{used / 5000:.1f} bytes per remembered call")
    assert used / 5000 < 120, used / 5000
    assert client.info("memory")["used_memory"] > before


def test_outside_rollouts_a_versions_calls_are_bounded_in_score_names(setup, ingest_client, monkeypatch):
    # given a bound of two names for a version's production calls, both taken
    monkeypatch.setattr("outcomes.pending.MAX_SCORE_NAMES_PER_VERSION", 2)
    call = event(None, scores={"helpfulness": 0.5, "tone": 0.5})
    post_events(ingest_client, [call])

    # when a late score brings a third name
    response = post_events(ingest_client, [late(call, accuracy=1.0)])

    # then it is refused naming it, as a rollout's 21st name is
    assert response.status_code == 400
    [detail] = response.json()["error"]["details"]
    assert (detail["index"], detail["field"]) == (0, "scores.accuracy")
    assert post_events(ingest_client, [late(call, tone=0.1)]).json()["accepted"] == 1


def test_an_event_id_used_by_a_call_and_a_late_score_in_one_batch_counts_the_first(setup, ingest_client):
    first_call = event(setup.rollout, scores=None)
    call = event(setup.rollout, scores=None)
    reused = late(first_call, tone=0.5) | {"event_id": call["event_id"]}

    response = post_events(ingest_client, [first_call, reused, call])

    assert response.json() == {"accepted": 2, "duplicates": 1, "unmatched": 0}
    assert scores_of(setup.rollout.pk, "candidate", "tone") == (1, pytest.approx(0.5))
    assert arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples == 1


def test_a_late_score_of_a_shadow_run_counts_for_the_shadow_arm(setup, ingest_client):
    shadow_run = event(setup.rollout, arm="shadow", version=2, scores=None)
    sampled_baseline = event(setup.rollout, arm="baseline", scores=None, shadow_sample=True)
    post_events(ingest_client, [shadow_run, sampled_baseline])

    post_events(ingest_client, [late(shadow_run, tone=0.2), late(sampled_baseline, tone=0.9)])
    outcome_minutes_flush()

    rows = {row.arm: row.scores["tone"] for row in OutcomeMinute.objects.filter(rollout=setup.rollout)}
    assert rows["shadow"]["sum"] == pytest.approx(0.2)
    assert rows["shadow_baseline"]["sum"] == pytest.approx(0.9)


def test_a_late_score_of_an_override_call_counts_for_the_override_arm(setup, ingest_client):
    call = event(setup.rollout, arm="override", version=2, scores=None)
    assert post_events(ingest_client, [call]).status_code == 202

    response = post_events(ingest_client, [late(call, tone=0.3)])
    outcome_minutes_flush()

    assert response.json()["accepted"] == 1
    [row] = OutcomeMinute.objects.filter(arm="override")
    assert (row.samples, row.scores["tone"]["count"]) == (1, 1)
