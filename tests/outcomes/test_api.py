from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from outcomes.models import OutcomeMinute
from outcomes.pending import pending_count
from outcomes.selectors import arm_stats
from outcomes.services import outcome_minutes_flush
from rollouts.models import Rollout
from tests.outcomes.conftest import EVENTS_URL, event, post_events

pytestmark = pytest.mark.django_db


def test_a_batch_is_accepted_and_counted_in_its_rollout_arms(setup, ingest_client):
    # given a running rollout and events of both arms
    events = [event(setup.rollout, arm="candidate") for _ in range(3)] + [
        event(setup.rollout, arm="baseline")
    ]

    # when they are posted and the flush runs
    response = post_events(ingest_client, events)
    outcome_minutes_flush()

    # then they are accepted and counted per arm
    assert response.status_code == 202
    assert response.json() == {"accepted": 4, "duplicates": 0, "unmatched": 0}
    stats = arm_stats(rollout_id=setup.rollout.pk)
    assert stats["candidate"].samples == 3
    assert stats["baseline"].samples == 1
    assert stats["candidate"].latency.total == pytest.approx(3 * 812.5)
    assert stats["candidate"].score("helpfulness").count == 3


def test_the_example_event_of_the_spec_is_accepted(setup, ingest_client):
    example = event(setup.rollout, arm="candidate", ts="2026-11-22T18:00:00Z")

    response = post_events(ingest_client, [example])

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "unmatched": 0}


def test_one_invalid_event_refuses_the_whole_batch_with_its_index(setup, ingest_client):
    # given a batch whose events 1 and 3 are invalid
    events = [event(setup.rollout) for _ in range(4)]
    events[1]["latency_ms"] = -5
    events[3]["scores"] = {"Bad Name": 1}
    del events[3]["event_id"]

    # when it is posted
    response = post_events(ingest_client, events)

    # then it is refused with each problem, and nothing is stored
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_events"
    assert {(d["index"], d["field"]) for d in error["details"]} == {
        (1, "latency_ms"),
        (3, "event_id"),
        (3, "scores"),
    }
    assert pending_count() == 0
    # and the valid events were not remembered: posting them alone counts them
    retry = post_events(ingest_client, [events[0], events[2]])
    assert retry.json() == {"accepted": 2, "duplicates": 0, "unmatched": 0}


def test_a_retried_batch_is_counted_once(setup, ingest_client):
    events = [event(setup.rollout) for _ in range(5)]

    first = post_events(ingest_client, events)
    retry = post_events(ingest_client, events)
    outcome_minutes_flush()

    assert first.json() == {"accepted": 5, "duplicates": 0, "unmatched": 0}
    assert retry.json() == {"accepted": 0, "duplicates": 5, "unmatched": 0}
    assert arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples == 5


def test_a_partly_retried_batch_counts_only_its_new_events(setup, ingest_client):
    old = [event(setup.rollout) for _ in range(3)]
    post_events(ingest_client, old)

    response = post_events(ingest_client, [event(setup.rollout), *old, event(setup.rollout)])
    outcome_minutes_flush()

    assert response.json() == {"accepted": 2, "duplicates": 3, "unmatched": 0}
    assert arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples == 5


def test_an_event_id_repeated_within_a_batch_is_counted_once(setup, ingest_client):
    one = event(setup.rollout)

    response = post_events(
        ingest_client, [one, dict(one), event(setup.rollout, event_id=one["event_id"].upper())]
    )
    outcome_minutes_flush()

    assert response.json() == {"accepted": 1, "duplicates": 2, "unmatched": 0}
    assert arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples == 1


@pytest.mark.parametrize("state", [Rollout.State.ROLLED_BACK, Rollout.State.ABORTED, Rollout.State.PENDING])
def test_events_of_a_rollout_that_is_no_longer_running_are_accepted(setup, ingest_client, state):
    # given events buffered while the rollout ran, then a rollback
    events = [event(setup.rollout) for _ in range(2)]
    Rollout.objects.filter(pk=setup.rollout.pk).update(state=state)

    response = post_events(ingest_client, events)
    outcome_minutes_flush()

    assert response.status_code == 202
    assert arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples == 2


def test_production_events_are_counted_under_their_version_without_a_rollout(setup, ingest_client):
    response = post_events(ingest_client, [event(), event(arm=None), event(version=2, rollout_id=None)])
    outcome_minutes_flush()

    assert response.json()["accepted"] == 3
    rows = OutcomeMinute.objects.filter(rollout=None).order_by("version__version")
    assert [(r.version.version, r.arm, r.samples) for r in rows] == [
        (1, "production", 2),
        (2, "production", 1),
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": "no.such.prompt"}, "prompt"),
        ({"prompt": "no.such.prompt", "rollout_id": None, "arm": None}, "version"),
        ({"version": 3, "rollout_id": None, "arm": None}, "version"),
        ({"version": 9}, "version"),
        ({"rollout_id": 999_999_999}, "rollout_id"),
        ({"version": 1}, "version"),  # the candidate arm is version 2
        ({"arm": "production"}, "arm"),
        ({"arm": None}, "arm"),
    ],
)
def test_an_event_pointing_at_nothing_that_exists_is_invalid(setup, ingest_client, fields, field):
    response = post_events(ingest_client, [event(setup.rollout), event(setup.rollout, **fields)])

    assert response.status_code == 400
    assert [(d["index"], d["field"]) for d in response.json()["error"]["details"]] == [(1, field)]
    assert pending_count() == 0


def test_an_event_of_another_prompts_rollout_is_invalid(setup, ingest_client, alice):
    from tests.factories import make_prompt

    make_prompt(alice, name="other.prompt", versions=2)

    response = post_events(ingest_client, [event(setup.rollout, prompt="other.prompt")])

    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "prompt"


def test_events_are_placed_in_the_minute_of_their_ts_clamped_to_five_minutes(setup, ingest_client):
    # given events two minutes ago, an hour ago and an hour ahead
    now = datetime.now(UTC)
    at = {
        "two_minutes_ago": now - timedelta(minutes=2),
        "hour_ago": now - timedelta(hours=1),
        "hour_ahead": now + timedelta(hours=1),
    }
    events = [event(setup.rollout, ts=moment.isoformat()) for moment in at.values()]

    # when they are posted and flushed
    post_events(ingest_client, events)
    after = datetime.now(UTC)
    outcome_minutes_flush()

    # then each is in its own minute, the far ones at arrival ± 5 minutes
    minutes = sorted(OutcomeMinute.objects.values_list("minute", flat=True))
    assert len(minutes) == 3
    floor = lambda moment: moment.replace(second=0, microsecond=0)  # noqa: E731
    assert floor(now - timedelta(minutes=5)) <= minutes[0] <= floor(after - timedelta(minutes=5))
    assert minutes[1] == floor(at["two_minutes_ago"])
    assert floor(now + timedelta(minutes=5)) <= minutes[2] <= floor(after + timedelta(minutes=5))


def test_a_batch_of_more_than_1000_events_is_refused_with_413(setup, ingest_client):
    response = post_events(ingest_client, [event(setup.rollout) for _ in range(1001)])

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert pending_count() == 0


def test_a_body_over_the_limit_is_refused_with_413(setup, ingest_client):
    body = b'{"events": [], "padding": "' + b"x" * (4 * 1024 * 1024) + b'"}'

    response = ingest_client.generic("POST", EVENTS_URL, body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"events": {}}', b'{"events": [1, null]}', b""])
def test_a_body_that_is_not_a_batch_is_refused_with_400(ingest_client, body):
    response = ingest_client.generic("POST", EVENTS_URL, body, content_type="application/json")

    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_reporting_needs_the_ingest_scope(setup, alice, client_with_key):
    reader = client_with_key(alice, "read")

    assert post_events(reader, [event(setup.rollout)]).status_code == 403
    assert pending_count() == 0


def test_reporting_needs_a_key(client, db):
    response = client.post(EVENTS_URL, orjson.dumps({"events": []}), content_type="application/json")

    assert response.status_code == 401


def test_known_prompts_and_rollouts_cost_no_database_query(setup, ingest_client, django_assert_num_queries):
    # given a first batch that loaded the key, the version and the rollout
    post_events(ingest_client, [event(setup.rollout), event()])

    # when the next batch of the same prompts arrives, then PostgreSQL is not asked
    with django_assert_num_queries(0):
        response = post_events(ingest_client, [event(setup.rollout) for _ in range(50)] + [event()])
    assert response.status_code == 202


def test_unknown_lookups_of_a_batch_cost_one_query_per_kind(setup, ingest_client, django_assert_num_queries):
    post_events(ingest_client, [event()])  # loads the key

    with django_assert_num_queries(2):
        response = post_events(
            ingest_client, [event(setup.rollout, arm="baseline"), event(setup.rollout), event(version=2)]
        )
    assert response.status_code == 202
