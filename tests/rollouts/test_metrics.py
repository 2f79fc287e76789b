"""/metrics of the controller, ingest and webhooks, scraped from a real web server (gunicorn, two
worker processes in multiprocess mode) while the work happens in a Celery worker process of its
own, which serves no HTTP: the series hold exactly what was done."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from outcomes.tasks import flush
from rollouts.models import Rollout
from rollouts.services import rollout_rollback
from rollouts.tasks import rollouts_tick
from rollouts.webhooks import webhook_create
from tests.factories import actor_for, make_key
from tests.rollouts.test_controller import reload, start, step, wait_until
from tests.rollouts.test_controller_faults import start_worker_process, worker_processes  # noqa: F401
from tests.servers import base_env, database_url, web_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def attempts_counted(samples: Samples) -> float:
    return sum(count for (name, _), count in samples.items() if name == "promptramp_webhook_deliveries_total")


def post_events(url: str, key: str, events: list[dict[str, Any]]) -> int:
    request = urllib.request.Request(
        url + "/api/v1/events",
        data=json.dumps({"events": events}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def outcomes(rollout: Rollout, arm: str, count: int) -> list[dict[str, Any]]:
    version = rollout.baseline.version if arm == "baseline" else rollout.candidate.version
    assert rollout.step_started_at is not None
    return [
        {
            "event_id": str(uuid.uuid4()),
            "prompt": rollout.prompt.name,
            "version": version,
            "rollout_id": rollout.pk,
            "arm": arm,
            "latency_ms": 800.0 + i % 10,
            "error": False,
            "ts": (rollout.step_started_at + timedelta(minutes=1)).isoformat(),
        }
        for i in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_metrics_report_exactly_what_the_workers_and_every_web_process_did(
    alice,
    prompt,
    webhook_receiver,
    worker_processes,  # noqa: F811 (the fixture imported above)
    monkeypatch,
    tmp_path,
):
    monkeypatch.setenv("PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE", "1")  # the worker process's receiver
    webhook_create(
        actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret=webhook_receiver.secret
    )
    webhook_receiver.statuses = [500]  # the first message fails once
    key = make_key(alice, "ingest")
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = base_env(
        DATABASE_URL=database_url(connection.settings_dict),
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        WEB_SERVER="gunicorn",
    )
    worker_processes.append(start_worker_process("metrics"))

    with web_server(env, tmp_path / "web.log") as url:
        # The counts of the whole service are kept in Redis across the test run: what this test
        # did is what they grew by.
        before = scrape(url)

        def counted(samples: Samples, name: str, **labels: str) -> float:
            return (value(samples, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)

        rollout = start(alice, [step(10, samples=100), step(50), step(100, samples=0)])
        # Events through the web server's two processes, in batches on new connections.
        sent = outcomes(rollout, "baseline", 150) + outcomes(rollout, "candidate", 150)
        for index in range(0, len(sent), 50):
            assert post_events(url, key, sent[index : index + 50]) == 202
        assert post_events(url, key, sent[:20]) == 202  # duplicates
        stray = {"event_id": str(uuid.uuid4()), "of_event": str(uuid.uuid4()), "scores": {"judge": 1}}
        assert post_events(url, key, [stray]) == 202  # a late score of no call: unmatched
        assert post_events(url, key, [{"event_id": "not-a-uuid"}]) == 400
        assert post_events(url, "pr_not_a_key", sent[:1]) == 401
        flush.delay()
        wait_until(lambda: value(scrape(url), "promptramp_ingest_flush_lag_seconds") == 0.0)
        # A tick through Celery: the worker evaluates, the rollout advances to 50%.
        rollouts_tick.delay()
        wait_until(lambda: reload(rollout).percent == 50)
        wait_until(lambda: len(webhook_receiver.received) >= 2)  # started (failed), advanced
        wait_until(
            lambda: attempts_counted(scrape(url)) - attempts_counted(before) == len(webhook_receiver.received)
        )
        answers = [scrape(url) for _ in range(6)]  # whichever process answers

        running = answers[0]
        assert {counted(samples, "promptramp_events_total", result="accepted") for samples in answers} == {
            300
        }
        assert counted(running, "promptramp_events_total", result="duplicate") == 20
        assert counted(running, "promptramp_events_total", result="unmatched") == 1
        assert counted(running, "promptramp_event_batches_refused_total", reason="invalid_events") == 1
        assert counted(running, "promptramp_event_batches_refused_total", reason="unauthenticated") == 1
        assert value(running, "promptramp_ingest_pending_aggregates") == 0
        assert value(running, "promptramp_ingest_flush_caught_up_timestamp_seconds") == pytest.approx(
            time.time(), abs=60
        )
        labels = {"prompt": "support.answer", "rollout": str(rollout.pk)}
        assert value(running, "promptramp_rollout_percent", **labels) == 50
        assert value(running, "promptramp_rollout_state", **labels, state="running") == 1
        assert value(running, "promptramp_rollouts", state="running") == 1
        assert value(running, "promptramp_rollouts", state="paused") == 0
        assert counted(running, "promptramp_rollout_transitions_total", kind="started", by="person") == 1
        assert counted(running, "promptramp_rollout_transitions_total", kind="advanced", by="controller") == 1
        assert counted(running, "promptramp_gate_verdicts_total", metric="error_rate", verdict="pass") == 1
        assert counted(running, "promptramp_controller_evaluation_seconds_count") == 1
        assert counted(running, "promptramp_controller_tick_seconds_count") == 1
        assert counted(running, "promptramp_controller_tick_seconds_bucket", le="+Inf") == 1
        for name in ("last_tick", "last_evaluation"):
            moment = value(running, f"promptramp_controller_{name}_timestamp_seconds")
            assert moment == pytest.approx(time.time(), abs=60)
        # The first message failed once; it is retried after 10 s (unless a run came that late).
        delivered = counted(running, "promptramp_webhook_deliveries_total", result="delivered")
        assert counted(running, "promptramp_webhook_deliveries_total", result="failed") == 1
        assert delivered == len(webhook_receiver.received) - 1
        assert value(running, "promptramp_webhook_outbox_backlog") == 2 - delivered

        # Events not flushed yet: they wait, and the lag is the time since the flush caught up.
        caught_up = value(running, "promptramp_ingest_flush_caught_up_timestamp_seconds")
        assert post_events(url, key, outcomes(rollout, "candidate", 5)) == 202
        waiting = scrape(url)
        assert value(waiting, "promptramp_ingest_pending_aggregates") == 1  # one minute, one arm
        lag = value(waiting, "promptramp_ingest_flush_lag_seconds")
        assert lag is not None and caught_up is not None
        assert 0 < lag <= time.time() - caught_up
        flush.delay()  # and nothing is left waiting for another test's flush
        wait_until(lambda: value(scrape(url), "promptramp_ingest_flush_lag_seconds") == 0.0)

        # Once the rollout ends, its series go: labels stay bounded by the active rollouts.
        rollout_rollback(actor=actor_for(alice), rollout_id=rollout.pk)
        ended = scrape(url)
        assert not [name for name, labels_ in ended if ("rollout", str(rollout.pk)) in labels_]
        assert value(ended, "promptramp_rollouts", state="running") == 0
        assert counted(ended, "promptramp_rollout_transitions_total", kind="rolled_back", by="person") == 1
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        assert key not in text and sent[0]["event_id"] not in text
