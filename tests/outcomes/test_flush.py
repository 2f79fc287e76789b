from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from celery.contrib.testing.worker import start_worker
from django.db import DatabaseError, connections

from config.celery import app
from core.redis_client import get_redis
from outcomes import services
from outcomes.metrics import read_gauges
from outcomes.models import FlushedBatch, OutcomeMinute
from outcomes.pending import PREFIX, batch_take, batches_open, pending_count
from outcomes.selectors import arm_series, arm_stats
from outcomes.services import batch_apply, events_ingest, outcome_minutes_flush
from outcomes.tasks import flush
from rollouts.models import Rollout
from tests.factories import make_prompt
from tests.outcomes.conftest import event, make_rollout

NOW = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)


def ingest(events: list[dict], now: datetime = NOW) -> None:
    result = events_ingest(body=orjson.dumps({"events": events}), now=now.timestamp())
    assert result.accepted == len(events)


def candidate_samples(setup) -> int:
    return arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples


def take_batch() -> str:
    batch_id = f"test-{time.monotonic_ns()}"
    assert batch_take(batch_id=batch_id, max_keys=100) > 0
    return batch_id


@pytest.mark.django_db
def test_a_flush_moves_every_pending_aggregate_into_minute_rows(setup):
    ingest([event(setup.rollout, ts=NOW.isoformat()) for _ in range(3)])

    report = outcome_minutes_flush()

    assert (report.batches, report.rows) == (1, 1)
    assert candidate_samples(setup) == 3
    assert pending_count() == 0
    assert batches_open() == []


@pytest.mark.django_db
def test_a_crash_after_taking_a_batch_loses_nothing(setup):
    # given events taken into a batch by a flush that then died
    ingest([event(setup.rollout) for _ in range(4)])
    take_batch()

    # when the next flush runs
    outcome_minutes_flush()

    # then the batch is applied
    assert candidate_samples(setup) == 4
    assert batches_open() == []


@pytest.mark.django_db
def test_a_crash_after_the_commit_and_before_forgetting_counts_nothing_twice(setup):
    # given a batch applied to PostgreSQL by a flush that died before deleting it from Redis
    ingest([event(setup.rollout) for _ in range(4)])
    batch_id = take_batch()
    assert batch_apply(batch_id=batch_id) == 1
    assert batches_open() == [batch_id]

    # when the next flush runs
    outcome_minutes_flush()

    # then the batch is forgotten without being counted again
    assert candidate_samples(setup) == 4
    assert batches_open() == []


@pytest.mark.django_db
def test_a_crash_inside_the_transaction_leaves_the_batch_for_the_next_flush(setup, monkeypatch):
    # given a flush whose row upserts fail after the batch was recorded, in the same transaction
    ingest([event(setup.rollout) for _ in range(4)])
    monkeypatch.setattr(services, "_ADD_ROW", "INSERT INTO no_such_table VALUES (%s)")
    with pytest.raises(DatabaseError):
        outcome_minutes_flush()
    assert candidate_samples(setup) == 0
    assert not FlushedBatch.objects.exists()

    # when the next flush runs with PostgreSQL healthy
    monkeypatch.undo()
    outcome_minutes_flush()

    # then the events are counted once
    assert candidate_samples(setup) == 4
    assert batches_open() == []


@pytest.mark.django_db
def test_events_arriving_after_a_flush_are_added_to_the_same_minute_row(setup):
    ingest([event(setup.rollout, latency_ms=100.0, scores={"helpfulness": 0.5})])
    outcome_minutes_flush()

    ingest([event(setup.rollout, latency_ms=100.0, scores={"helpfulness": 1.0, "tone": 0.2}, error=True)])
    outcome_minutes_flush()

    [row] = OutcomeMinute.objects.all()
    assert (row.samples, row.errors, row.latency_count) == (2, 1, 2)
    assert sum(row.latency_histogram.values()) == 2 and len(row.latency_histogram) == 1
    assert row.scores["helpfulness"] == {"count": 2, "sum": 1.5, "sumsq": 1.25}
    assert row.scores["tone"]["count"] == 1


@pytest.mark.django_db(transaction=True)
def test_flushes_running_at_once_apply_a_batch_exactly_once(setup):
    # given an open batch and four flushers starting together
    ingest([event(setup.rollout) for _ in range(10)])
    take_batch()
    ingest([event(setup.rollout) for _ in range(5)])
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def flusher() -> None:
        try:
            start.wait()
            outcome_minutes_flush()
        except BaseException as error:  # reported by the assertion below
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=flusher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then every event is counted once
    assert failures == []
    assert candidate_samples(setup) == 15
    assert batches_open() == []


@pytest.mark.django_db(transaction=True)
def test_the_celery_flush_task_moves_events_into_postgresql(setup):
    ingest([event(setup.rollout) for _ in range(3)], now=datetime.now(UTC))

    with start_worker(app, perform_ping_check=False):
        flush.delay()
        deadline = time.monotonic() + 20
        while candidate_samples(setup) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)

    assert candidate_samples(setup) == 3
    assert pending_count() == 0


@pytest.mark.django_db
def test_arm_stats_of_a_window_counts_the_minutes_overlapping_it(setup):
    # given events at 12:00, 12:05 and 12:10
    for minutes in (0, 5, 10):
        at = NOW + timedelta(minutes=minutes)
        ingest([event(setup.rollout, ts=at.isoformat())], now=at)
        ingest([event(setup.rollout, arm="baseline", ts=at.isoformat())], now=at)
    outcome_minutes_flush()

    def samples(since=None, until=None) -> tuple[int, int]:
        stats = arm_stats(rollout_id=setup.rollout.pk, since=since, until=until)
        return stats["baseline"].samples, stats["candidate"].samples

    assert samples() == (3, 3)
    assert samples(since=NOW + timedelta(minutes=5)) == (2, 2)
    assert samples(since=NOW + timedelta(minutes=5, seconds=29)) == (2, 2)  # 12:05:59 is in 12:05
    assert samples(since=NOW + timedelta(minutes=6)) == (1, 1)
    assert samples(until=NOW + timedelta(minutes=5)) == (2, 2)  # [.., 12:05:30) holds 12:05
    assert samples(since=NOW, until=NOW + timedelta(minutes=1)) == (1, 1)
    assert samples(since=NOW + timedelta(hours=1)) == (0, 0)


@pytest.mark.django_db
def test_arm_stats_gives_each_arms_figures(setup):
    ingest(
        [
            event(setup.rollout, latency_ms=100.0, cost_usd=0.01, scores={"helpfulness": 0.5}),
            event(setup.rollout, latency_ms=300.0, cost_usd=0.03, error=True, scores={"helpfulness": 1.0}),
            event(setup.rollout, latency_ms=None, cost_usd=None, scores={}),
        ]
    )
    outcome_minutes_flush()

    stats = arm_stats(rollout_id=setup.rollout.pk)

    candidate = stats["candidate"]
    assert (candidate.samples, candidate.errors) == (3, 1)
    assert candidate.latency.count == 2 and candidate.latency.total == pytest.approx(400.0)
    assert candidate.latency_quantile(0.5) == pytest.approx(100.0, rel=0.01)
    assert candidate.latency_quantile(0.99) == pytest.approx(300.0, rel=0.01)
    assert candidate.cost_per_request == pytest.approx(0.02)
    assert candidate.score_means() == {"helpfulness": pytest.approx(0.75)}
    assert stats["baseline"].samples == 0


@pytest.mark.django_db
def test_arm_series_gives_each_minute_of_each_arm_oldest_first(setup):
    for minutes in (0, 1):
        at = NOW + timedelta(minutes=minutes)
        ingest([event(setup.rollout, ts=at.isoformat()) for _ in range(minutes + 1)], now=at)
    ingest([event(setup.rollout, arm="baseline", ts=NOW.isoformat())])
    outcome_minutes_flush()

    series = arm_series(
        rollout_id=setup.rollout.pk, since=NOW - timedelta(minutes=5), until=NOW + timedelta(hours=1)
    )

    minute = NOW.replace(second=0)
    assert [(m, arm, stats.samples) for m, arm, stats in series] == [
        (minute, "baseline", 1),
        (minute, "candidate", 1),
        (minute + timedelta(minutes=1), "candidate", 2),
    ]
    assert series[0][2].score_means() == {"helpfulness": pytest.approx(0.82)}


@pytest.mark.django_db
def test_records_of_applied_batches_are_kept_a_day(setup):
    old = FlushedBatch.objects.create(batch_id="old", keys=1)
    FlushedBatch.objects.filter(pk=old.pk).update(flushed_at=datetime.now(UTC) - timedelta(days=2))
    FlushedBatch.objects.create(batch_id="recent", keys=1)

    outcome_minutes_flush()

    assert set(FlushedBatch.objects.values_list("batch_id", flat=True)) == {"recent"}


def set_aside() -> dict[str, str]:
    """The aggregates a flush could not apply: ``<batch id>:<key>`` -> why."""
    raw = get_redis().hgetall(PREFIX + "unapplied")
    return {name.decode(): reason.decode() for name, reason in raw.items()}


def kept_fields(name: str) -> dict[bytes, bytes]:
    return get_redis().hgetall(f"{PREFIX}unapplied:{name}")


def unapplied_gauge() -> float:
    [family] = [f for f in read_gauges() if f.name == "promptramp_ingest_unapplied_aggregates"]
    return family.samples[0].value


def ingest_for_a_rollout_deleted_since(setup, alice) -> Rollout:
    """Events of a rollout deleted (out of band) after they were accepted, with events of the
    rollout that exists (3 of its candidate)."""
    other = make_rollout(make_prompt(alice, name="support.greeting", versions=2))
    ingest(
        [event(other, prompt="support.greeting") for _ in range(2)] + [event(setup.rollout) for _ in range(3)]
    )
    Rollout.objects.filter(pk=other.pk).delete()
    return other


@pytest.mark.django_db(transaction=True)
def test_an_aggregate_of_a_rollout_deleted_since_is_set_aside_and_blocks_no_other(setup, alice, caplog):
    # given events of a rollout deleted since they were accepted, in a batch with others
    other = ingest_for_a_rollout_deleted_since(setup, alice)

    # when flushes run, with events arriving between them
    with caplog.at_level("ERROR", logger="outcomes.services"):
        first = outcome_minutes_flush()
    ingest([event(setup.rollout) for _ in range(4)])
    outcome_minutes_flush()

    # then every other aggregate is applied
    assert (first.batches, first.rows) == (1, 1)
    assert candidate_samples(setup) == 7
    assert pending_count() == 0 and batches_open() == []
    # and the deleted rollout's is kept in Redis, counted, with the reason logged
    [(name, reason)] = set_aside().items()
    assert name.endswith(f":{other.pk}:candidate")
    assert "foreign key" in reason and f"(rollout_id)=({other.pk})" in reason
    assert kept_fields(name)[b"n"] == b"2"
    assert unapplied_gauge() == 1
    assert name in caplog.text and reason in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_crash_after_setting_aside_and_before_the_commit_applies_the_others_once(setup, alice, monkeypatch):
    # given a flush that died after setting an aggregate aside, before its transaction committed
    ingest_for_a_rollout_deleted_since(setup, alice)
    set_aside_for_real = services.batch_set_aside

    def set_aside_and_die(**arguments) -> None:
        set_aside_for_real(**arguments)
        raise ConnectionError("the worker died")

    monkeypatch.setattr(services, "batch_set_aside", set_aside_and_die)
    with pytest.raises(ConnectionError):
        outcome_minutes_flush()
    assert candidate_samples(setup) == 0

    # when the next flush runs
    monkeypatch.undo()
    outcome_minutes_flush()

    # then the others are applied once and the aggregate is kept once
    assert candidate_samples(setup) == 3
    assert len(set_aside()) == 1
    assert batches_open() == []


@pytest.mark.django_db
def test_an_aggregate_that_cannot_be_read_is_set_aside_and_blocks_no_other(setup):
    # given a pending aggregate with a field no flush knows (written by another version, or by
    # hand), taken with events of the rollout
    ingest([event(setup.rollout) for _ in range(3)])
    baseline = setup.rollout.baseline
    key = f"{int(NOW.timestamp()) // 60}:{setup.prompt.pk}:{baseline.pk}:{setup.rollout.pk}:baseline"
    get_redis().hset(f"{PREFIX}agg:{key}", mapping={"n": 5, "zz": 1})
    get_redis().sadd(PREFIX + "pending", key)

    # when a flush runs, twice
    outcome_minutes_flush()
    outcome_minutes_flush()

    # then the rollout's events are applied and the unreadable aggregate is kept, once
    assert candidate_samples(setup) == 3
    assert arm_stats(rollout_id=setup.rollout.pk)["baseline"].samples == 0
    [(name, reason)] = set_aside().items()
    assert name.endswith(":" + key)
    assert "'zz'" in reason
    assert kept_fields(name) == {b"n": b"5", b"zz": b"1"}
    assert batches_open() == []


@pytest.mark.django_db
def test_an_aggregate_its_row_cannot_hold_is_set_aside_and_the_row_is_unchanged(setup):
    # given a minute row whose input tokens are near the most a bigint holds
    at = NOW.replace(second=0)
    ingest([event(setup.rollout, ts=at.isoformat())])
    outcome_minutes_flush()
    most = 2**63 - 1
    OutcomeMinute.objects.filter(arm="candidate").update(input_tokens_sum=most - 100)
    # and events that would take it past it, with events of another arm
    ingest([event(setup.rollout, ts=at.isoformat(), input_tokens=350)])
    ingest([event(setup.rollout, arm="baseline", ts=at.isoformat())])

    # when a flush runs
    outcome_minutes_flush()

    # then the other arm's row is written, and the candidate's is as it was
    candidate = OutcomeMinute.objects.get(arm="candidate")
    assert (candidate.samples, candidate.input_tokens_sum) == (1, most - 100)
    assert OutcomeMinute.objects.get(arm="baseline").samples == 1
    [(name, reason)] = set_aside().items()
    assert name.endswith(":candidate") and "out of range" in reason
    assert kept_fields(name)[b"is"] == b"350"
    assert batches_open() == []
