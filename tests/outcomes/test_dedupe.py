from __future__ import annotations

import orjson
import pytest

from core.redis_client import get_redis
from outcomes.pending import GENERATIONS, PREFIX
from outcomes.services import IngestResult, events_ingest
from tests.outcomes.conftest import event

pytestmark = pytest.mark.django_db

T0 = 1_795_000_000.0
HOUR = 3600.0


def post(events: list[dict], now: float) -> IngestResult:
    return events_ingest(body=orjson.dumps({"events": events}), now=now)


def test_an_event_id_is_remembered_for_24_hours(setup):
    # given an event received at T0
    first = [event(setup.rollout)]
    post(first, T0)

    # when it is sent again just under 24 hours later, then it is a duplicate
    assert post(first, T0 + 24 * HOUR - 1) == IngestResult(accepted=0, duplicates=1)


def test_an_event_id_is_forgotten_at_most_one_generation_after_24_hours(setup):
    first = [event(setup.rollout)]
    post(first, T0)
    post([event(setup.rollout)], T0 + 23 * HOUR)

    result = post(first, T0 + 24 * HOUR + 24 * HOUR / GENERATIONS + 1)

    assert result == IngestResult(accepted=1, duplicates=0)


def test_an_event_id_is_remembered_among_the_last_max_ids(setup, settings):
    # given a bound of 120 ids (generations of 10) and 10 ids, then 110 others
    settings.PROMPTRAMP_DEDUPE_MAX_IDS = 120
    first = [event(setup.rollout) for _ in range(10)]
    post(first, T0)
    for _ in range(11):
        post([event(setup.rollout) for _ in range(10)], T0 + 1)

    # when the first ids come again, then they are duplicates
    assert post(first, T0 + 2) == IngestResult(accepted=0, duplicates=10)


def test_an_event_id_is_forgotten_once_max_ids_newer_ids_were_seen(setup, settings):
    settings.PROMPTRAMP_DEDUPE_MAX_IDS = 120
    first = [event(setup.rollout) for _ in range(10)]
    post(first, T0)
    for _ in range(12):
        post([event(setup.rollout) for _ in range(10)], T0 + 1)

    assert post(first, T0 + 2) == IngestResult(accepted=10, duplicates=0)


def test_the_ids_remembered_stay_bounded_however_many_arrive(setup, settings):
    # given a bound of 120 ids and 1,000 ids received
    settings.PROMPTRAMP_DEDUPE_MAX_IDS = 120
    for step in range(50):
        post([event(setup.rollout) for _ in range(20)], T0 + step)

    # then Redis holds at most the bound plus two generations, in at most GENERATIONS + 2 hashes
    client = get_redis()
    generations = [key for key in client.scan_iter(match=f"{PREFIX}seen:*")]
    assert len(generations) <= GENERATIONS + 2
    assert 120 <= sum(client.hlen(key) for key in generations) <= 120 + 2 * 20
