"""Redis stopping or crashing under ingest. These tests start Redis servers of their own (embedded,
with ``appendfsync always``), whatever Redis the rest of the suite uses."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.redis_client import forget_clients, get_redis
from devstack import embedded_services
from outcomes import pending
from outcomes.pending import pending_count
from outcomes.selectors import arm_stats
from outcomes.services import outcome_minutes_flush
from tests.outcomes.conftest import event, post_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_redis(tmp_path: Path, settings) -> Iterator[Callable[[], None]]:
    """Point the service at a Redis of this test's own; yields a function that restarts it from
    its append-only file after it was stopped or killed."""

    def start() -> None:
        urls = embedded_services.ensure_running(tmp_path, services=["redis"]).urls
        settings.REDIS_URL = urls["REDIS_URL"]
        forget_clients()

    start()
    try:
        yield start
    finally:
        embedded_services.stop(["redis"], tmp_path)
        forget_clients()


def redis_pid(root: Path) -> int:
    return int((root / "redis" / "redis.pid").read_text())


def test_redis_down_answers_503_with_retry_after_and_writes_nothing(
    setup, ingest_client, own_redis, tmp_path
):
    # given a batch stored, then Redis stopped
    stored = [event(setup.rollout) for _ in range(3)]
    assert post_events(ingest_client, stored).status_code == 202
    embedded_services.stop(["redis"], tmp_path)

    # when a batch arrives
    refused = [event(setup.rollout) for _ in range(4)]
    response = post_events(ingest_client, refused)

    # then it is refused as a dependency failure, to be retried
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response["Retry-After"]) > 0

    # and once Redis is back, the first batch is all there and nothing of the second
    own_redis()
    assert pending_count() == 1
    assert post_events(ingest_client, stored).json() == {"accepted": 0, "duplicates": 3, "unmatched": 0}
    assert post_events(ingest_client, refused).json() == {"accepted": 4, "duplicates": 0, "unmatched": 0}
    outcome_minutes_flush()
    assert arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples == 7


def test_events_answered_202_survive_redis_being_killed(setup, ingest_client, own_redis, tmp_path):
    # given batches answered 202
    for _ in range(5):
        assert post_events(ingest_client, [event(setup.rollout) for _ in range(100)]).status_code == 202

    # when Redis is killed at once (no shutdown, no snapshot) and started again from its AOF
    pid = redis_pid(tmp_path)
    os.kill(pid, signal.SIGKILL)
    while embedded_services.status(tmp_path)["redis"]:
        time.sleep(0.01)
    own_redis()

    # then every event is counted once the flush runs
    outcome_minutes_flush()
    assert arm_stats(rollout_id=setup.rollout.pk)["candidate"].samples == 500


def test_a_backlog_over_its_bound_sheds_load_with_503_and_stores_nothing(setup, ingest_client, settings):
    # given as many aggregates waiting as the bound allows (two minutes of one arm)
    settings.PROMPTRAMP_INGEST_MAX_PENDING = 2
    post_events(ingest_client, [event(setup.rollout, arm="baseline"), event(setup.rollout)])

    # when another batch arrives
    late = [event(setup.rollout)]
    response = post_events(ingest_client, late)

    # then it is refused for now, and accepted once the flush has caught up
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ingest_backlog"
    assert response["Retry-After"] == "5"
    outcome_minutes_flush()
    assert post_events(ingest_client, late).json() == {"accepted": 1, "duplicates": 0, "unmatched": 0}


def test_a_redis_that_does_not_fsync_every_write_is_reported_once(
    setup, ingest_client, own_redis, monkeypatch, caplog
):
    # given a Redis that writes its AOF to disk only every second
    get_redis().config_set("appendfsync", "everysec")
    monkeypatch.setattr(pending, "_durability_checked", False)

    # when batches arrive
    for _ in range(2):
        assert post_events(ingest_client, [event(setup.rollout)]).status_code == 202

    # then the operator is told once that a 202 is not durable there
    warnings = [r for r in caplog.records if r.name == "outcomes.pending" and r.levelname == "ERROR"]
    assert len(warnings) == 1
    assert "appendfsync=everysec" in warnings[0].getMessage()
