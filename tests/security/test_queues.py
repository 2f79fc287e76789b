"""A webhook receiver that never answers cannot hold the controller: Celery work is split into
queues with a worker process each, as the run command starts them, so while every webhook
delivery hangs, the outcome flush and the tick still run at once."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app
from core.actors import Actor
from devstack.stack import QUEUES, worker_commands
from outcomes.pending import pending_count
from outcomes.services import events_ingest
from rollouts.models import Rollout
from rollouts.services import rollout_create
from rollouts.webhooks import webhook_create
from tests.factories import actor_for, make_prompt
from tests.servers import database_url, stop, wait_for

PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.fixture
def hanging_receiver() -> Iterator[tuple[str, list[float]]]:
    """A webhook receiver on 127.0.0.1 that reads each request and never answers (for 60 s);
    the URL and when each request arrived."""
    arrived: list[float] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            arrived.append(time.monotonic())
            release.wait(60)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", arrived
    release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def run_command_workers() -> Iterator[None]:
    """The Celery workers the run command starts (one per queue), on this test run's database."""
    celery_app.control.purge()
    env = os.environ | {
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    processes = [
        subprocess.Popen(command, cwd=Path(settings.BASE_DIR), env=env, stdout=subprocess.DEVNULL)
        for command in worker_commands(env)
    ]
    try:
        wait_for(lambda: len(celery_app.control.ping(timeout=0.5)) >= len(QUEUES), seconds=60)
        yield
    finally:
        for process in processes:
            stop(process, seconds=10)


def report_outcome(rollout: Rollout) -> None:
    event = {
        "event_id": str(uuid.uuid4()),
        "prompt": rollout.prompt.name,
        "version": rollout.candidate.version,
        "rollout_id": rollout.pk,
        "arm": "candidate",
        "latency_ms": 700.0,
        "error": False,
    }
    assert events_ingest(body=orjson.dumps({"events": [event]}), now=time.time()).accepted == 1


@pytest.mark.django_db(transaction=True)
def test_a_hanging_webhook_receiver_delays_neither_the_flush_nor_the_tick(
    alice, hanging_receiver, run_command_workers, settings
):
    # Given webhooks to a receiver that never answers, and two rollouts whose starts every
    # outbound worker is now busy delivering
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    url, arrived = hanging_receiver
    for _ in range(3):
        webhook_create(actor=Actor.system(), url=url, secret="long-enough")
    rollouts = []
    for name in ("support.answer", "support.chat"):
        make_prompt(alice, name=name, versions=2)
        rollouts.append(
            rollout_create(actor=actor_for(alice), prompt_name=name, candidate_version=2, plan=PLAN)
        )
    wait_for(lambda: len(arrived) >= 2, seconds=30)
    report_outcome(rollouts[0])

    # When the flush and the tick are queued
    started = time.monotonic()
    celery_app.send_task("outcomes.flush")
    celery_app.send_task("rollouts.tick")

    # Then both run at once, while the receiver still holds its deliveries
    wait_for(lambda: pending_count() == 0, seconds=5)
    wait_for(
        lambda: (
            Rollout.objects.filter(pk__in=[r.pk for r in rollouts], last_evaluated_at__isnull=False).count()
            == 2
        ),
        seconds=5,
    )
    assert time.monotonic() - started < 5
