from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from celery.contrib.testing.worker import start_worker
from django.db import DatabaseError, connections

from config.celery import app
from outcomes import services
from outcomes.models import FlushedBatch, OutcomeMinute
from outcomes.pending import batch_take, batches_open, pending_count
from outcomes.selectors import arm_series, arm_stats
from outcomes.services import batch_apply, events_ingest, outcome_minutes_flush
from outcomes.tasks import flush
from tests.outcomes.conftest import event

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
