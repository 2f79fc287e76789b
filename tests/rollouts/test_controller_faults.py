"""The controller under concurrency and failure: racing evaluations make one transition; a
worker killed mid-evaluation leaves the rollout as it was, and the next tick finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from audit.models import AuditEntry
from config.celery import app as celery_app
from registry.models import Label
from rollouts.controller import rollout_evaluate
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_create
from rollouts.tasks import rollout_evaluate_task, rollouts_tick
from tests.factories import actor_for
from tests.rollouts.outcomes import OBSERVE_TRAFFIC, ingest_client, report
from tests.rollouts.test_controller import GATES, step, wait_until
from tests.servers import database_url, stop

BASE_DIR = Path(settings.BASE_DIR)


def start_worker_process(name: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo"]
    command += ["--loglevel", "WARNING", "--hostname", f"{name}-{os.getpid()}@%h", "--without-mingle"]
    return subprocess.Popen(command, cwd=BASE_DIR, env=env)


@pytest.fixture
def worker_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Celery workers started as processes of their own; stopped (if still alive) at the end."""
    celery_app.control.purge()
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            stop(process, seconds=30)


def production() -> int:
    return Label.objects.get(prompt__name="support.answer", name="production").version.version


@pytest.mark.django_db(transaction=True)
def test_racing_evaluations_make_exactly_one_transition(alice, prompt):
    events = ingest_client(alice)
    rollout = rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=[step(10), step(50), step(100, samples=0)],
        gates=GATES,
        traffic=OBSERVE_TRAFFIC,
    )
    report(events, rollout, "baseline", 300)
    report(events, rollout, "candidate", 300)
    barrier = threading.Barrier(8)
    actions: list[str] = []
    now = Rollout.objects.get(pk=rollout.pk).step_started_at + timedelta(minutes=2)

    def evaluate() -> None:
        try:
            barrier.wait()
            decision = rollout_evaluate(rollout_id=rollout.pk, now=now)
            actions.append("skipped" if decision is None else str(decision.action))
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert actions.count("advance") == 1
    assert set(actions) <= {"advance", "hold", "skipped"}
    assert RolloutTransition.objects.filter(rollout=rollout, event="advanced").count() == 1
    assert AuditEntry.objects.filter(action="rollout.advanced").count() == 1
    assert Rollout.objects.get(pk=rollout.pk).percent == 50


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_evaluation_leaves_the_rollout_consistent(alice, prompt, worker_processes):
    rollout = rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=[step(100, samples=0)],
        gates=[],
    )
    # Given another transaction holding the prompt's row, so that the evaluation deciding to
    # succeed stops inside its transaction, with the rollout locked, waiting to move production.
    holder = psycopg.connect(database_url(connection.settings_dict), autocommit=False)
    holder.execute("SELECT id FROM registry_prompt WHERE name = 'support.answer' FOR UPDATE")
    worker = start_worker_process("doomed")
    worker_processes.append(worker)
    rollout_evaluate_task.delay(rollout.pk)

    def blocked_backend() -> int | None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE '%registry_prompt%'"
            )
            row = cursor.fetchone()
        return row[0] if row else None

    wait_until(lambda: blocked_backend() is not None, timeout=60)
    pid = blocked_backend()
    # When the worker is killed mid-transaction,
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    holder.rollback()
    holder.close()

    def gone() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            return cursor.fetchone()[0] == 0

    wait_until(gone, timeout=30)
    # then nothing of its half-made transition is left,
    left = Rollout.objects.get(pk=rollout.pk)
    assert (left.state, left.percent, left.ended_at) == ("running", 100, None)
    assert RolloutTransition.objects.filter(rollout=rollout).count() == 1
    assert not AuditEntry.objects.filter(action="rollout.succeeded").exists()
    assert production() == 1
    # and the next tick, on another worker, finishes the job exactly once.
    worker_processes.append(start_worker_process("successor"))
    started = time.monotonic()
    rollouts_tick.delay()
    wait_until(lambda: Rollout.objects.get(pk=rollout.pk).state == "succeeded", timeout=60)
    assert time.monotonic() - started < 60
    assert production() == 2
    assert RolloutTransition.objects.filter(rollout=rollout, event="succeeded").count() == 1
    assert AuditEntry.objects.filter(action="rollout.succeeded").count() == 1
