"""SDK exposures through POST /api/v1/events: counted once per batch_id, checked row by row."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from access.services import apikey_create
from core.actors import Actor
from core.redis_client import get_redis
from outcomes.exposures import exposures_read
from outcomes.models import OutcomeMinute
from outcomes.services import outcome_minutes_flush
from rollouts.exposures import PREFIX, exposures_key
from tests.factories import make_key, make_prompt
from tests.outcomes.conftest import EVENTS_URL, event, make_rollout

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clean_exposures() -> Iterator[None]:
    yield
    client = get_redis()
    keys = list(client.scan_iter(match=PREFIX + "*", count=1000))
    if keys:
        client.delete(*keys)


def minute_now() -> int:
    return int(time.time() // 60)


def row(rollout: Any, arm: str = "candidate", count: int = 5, **fields: Any) -> dict[str, Any]:
    return {"rollout_id": rollout.pk, "arm": arm, "minute": minute_now(), "count": count} | fields


def post(client: Any, *, events: list[Any] | None = None, **fields: Any) -> Any:
    return client.post(EVENTS_URL, {"events": events or [], **fields}, format="json")


def counted(rollout: Any) -> dict[str, int]:
    now = datetime.now(UTC)
    seen = exposures_read(
        rollout_id=rollout.pk,
        threshold=1000,
        since=now - timedelta(minutes=10),
        until=now + timedelta(minutes=10),
    )
    return {} if seen is None else {"baseline": seen.baseline.count, "candidate": seen.candidate.count}


def test_a_batch_with_exposures_counts_them_with_its_events(setup, ingest_client):
    batch = {
        "batch_id": str(uuid.uuid4()),
        "exposures": [row(setup.rollout), row(setup.rollout, "baseline", 45)],
    }

    response = post(ingest_client, events=[event(setup.rollout)], **batch)

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "unmatched": 0, "exposures": 2}
    assert counted(setup.rollout) == {"baseline": 45, "candidate": 5}


def test_a_batch_sent_again_with_its_batch_id_is_counted_once(setup, ingest_client):
    batch = {"batch_id": str(uuid.uuid4()), "exposures": [row(setup.rollout, count=7)]}
    events = [event(setup.rollout)]
    reported_before = REGISTRY.get_sample_value("promptramp_sdk_exposures_total") or 0.0

    first = post(ingest_client, events=events, **batch)
    again = post(ingest_client, events=events, **batch)
    outcome_minutes_flush()

    assert first.json() == {"accepted": 1, "duplicates": 0, "unmatched": 0, "exposures": 1}
    assert again.json() == {"accepted": 0, "duplicates": 1, "unmatched": 0, "exposures": 0}
    assert counted(setup.rollout) == {"baseline": 0, "candidate": 7}
    assert sum(OutcomeMinute.objects.values_list("samples", flat=True)) == 1
    assert REGISTRY.get_sample_value("promptramp_sdk_exposures_total") == reported_before + 7


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_sent_in_parallel_is_counted_once(setup, alice):
    key = make_key(alice, "ingest")
    body = {"batch_id": str(uuid.uuid4()), "events": [], "exposures": [row(setup.rollout, count=3)]}
    answers: list[Any] = []

    def send() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        answers.append(client.post(EVENTS_URL, body, format="json").json())
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer["exposures"] for answer in answers) == [0] * 7 + [1]
    assert counted(setup.rollout)["candidate"] == 3


def test_invalid_rows_are_answered_as_exposures_i_and_nothing_is_stored(setup, ingest_client):
    rows = [
        row(setup.rollout),
        row(setup.rollout, count=0),
        row(setup.rollout, arm="production"),
        {"rollout_id": "7", "minute": 1.5, "count": 1, "arm": "candidate"},
        "not an object",
        row(setup.rollout, rollout_id=999_999),
    ]

    response = post(ingest_client, events=[event(setup.rollout)], batch_id=str(uuid.uuid4()), exposures=rows)
    outcome_minutes_flush()

    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert {(d["exposure"], d["field"]) for d in details} == {
        (1, "exposures[1].count"),
        (2, "exposures[2].arm"),
        (3, "exposures[3].rollout_id"),
        (3, "exposures[3].minute"),
        (4, "exposures[4]"),
        (5, "exposures[5].rollout_id"),
    }
    assert counted(setup.rollout) == {}
    assert not OutcomeMinute.objects.exists()


def test_exposures_need_a_batch_id_and_it_must_be_a_uuid(setup, ingest_client):
    missing = post(ingest_client, exposures=[row(setup.rollout)])
    malformed = post(ingest_client, exposures=[row(setup.rollout)], batch_id="batch-1")

    assert missing.status_code == malformed.status_code == 400
    assert missing.json()["error"]["details"] == [
        {"field": "batch_id", "reason": "required with exposures: a UUID"}
    ]
    assert malformed.json()["error"]["details"][0]["field"] == "batch_id"
    assert counted(setup.rollout) == {}


def test_a_minute_is_clamped_like_ts(setup, ingest_client):
    far_ahead = row(setup.rollout, minute=minute_now() + 1000)

    post(ingest_client, batch_id=str(uuid.uuid4()), exposures=[far_ahead])

    (field,) = get_redis().hkeys(exposures_key(setup.rollout.pk))
    assert minute_now() <= int(field.decode().split(":")[1]) <= minute_now() + 6


def test_a_key_limited_to_other_prompts_may_not_report_their_exposures(setup, alice):
    other = make_rollout(make_prompt(alice, name="billing.invoice", versions=2))
    _, raw = apikey_create(
        actor=Actor.system(), name="team", user=alice, scopes=["ingest"], prompts=["support.*"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = post(client, batch_id=str(uuid.uuid4()), exposures=[row(setup.rollout), row(other)])

    assert response.status_code == 403
    assert response.json()["error"]["details"] == [
        {
            "exposure": 1,
            "field": "exposures[1].rollout_id",
            "reason": "a rollout of a prompt this API key is limited from",
        }
    ]
    assert counted(setup.rollout) == {}
