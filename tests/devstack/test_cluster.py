"""The service as a cluster (`make cluster`: two web servers, the stream process, two workers each
on every queue, one beat, behind nginx) loses a web server and a worker to SIGKILL in the middle
of a rollout's step, while `manage.py simulate` drives the rollout through the balancer:

- resolve keeps answering through the balancer (nginx sends a request the dead server cannot take
  to the other one): no failure at all;
- every event acknowledged with 202 is stored once, in its arm, after the flush;
- the rollout makes exactly its transitions: started, two advances, succeeded, each once;
- the worker is killed while it applies the advance to 100% (held inside its transaction by a
  lock this test takes on the transitions table): nothing of that half-made advance stays, and
  the surviving worker makes it at a later tick. That is the mechanism that holds: the next tick
  re-evaluates. Celery's late acknowledgement does not bring the message back in time: with the
  Redis broker an unacknowledged message returns only after the visibility timeout (an hour,
  config/settings.py sets no other), and the tick's evaluation needs no such return.

The cluster command runs as `make cluster` runs it, on this test run's PostgreSQL and Redis, with
a tick and a flush every second."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from outcomes.selectors import arm_stats
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_create, rollout_promote
from tests.factories import actor_for, make_key, make_prompt
from tests.servers import alive, database_url, running, wait_for

# Steps of seconds, on time alone: a step's samples count from the first whole minute after it began.
PLAN = [
    {"percent": 10, "min_duration_s": 10, "min_samples": 0},
    {"percent": 50, "min_duration_s": 15, "min_samples": 0},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0, "approval": "manual"},
]
SIMULATE_SECONDS = 60


@pytest.mark.django_db(transaction=True)
def test_the_cluster_survives_losing_a_web_server_and_a_worker_mid_step(alice, run_env, tmp_path):
    make_prompt(alice, versions=2)
    key = make_key(alice, "read,ingest")
    env = run_env("cluster") | {"PROMPTRAMP_TICK_SECONDS": "1", "PROMPTRAMP_FLUSH_SECONDS": "1"}
    balancer = f"http://127.0.0.1:{env['PORT']}"
    celery_app.control.purge()  # nothing left in the queues by other tests
    with running(env, tmp_path / "cluster.log", ("devstack.cluster",)) as cluster:
        nodes = cluster_nodes(cluster.pid)
        wait_for(lambda: workers_answering() == 2, seconds=60, every=0.5)
        rollout = rollout_create(
            actor=actor_for(alice), prompt_name="support.answer", candidate_version=2, plan=PLAN, gates=[]
        )
        with ExitStack() as stack:
            resolves = stack.enter_context(
                resolving(f"{balancer}/api/v1/prompts/support.answer/resolve?unit=prober", key)
            )
            simulate = stack.enter_context(simulating(env, key, balancer, tmp_path / "simulate.log"))
            # Given the rollout at 50%, with the advance to 100% held inside its transaction,
            wait_for(lambda: reload(rollout).step_index == 1, seconds=120, every=0.2)
            holder = psycopg.connect(database_url(connection.settings_dict), autocommit=False)
            stack.callback(holder.close)
            holder.execute("LOCK TABLE rollouts_rollouttransition IN SHARE MODE")
            wait_for(lambda: blocked_advance() is not None, seconds=120, every=0.2)
            backend, client_port = blocked_advance()  # type: ignore[misc]
            doomed = worker_holding(nodes, client_port)
            # when a web server and the worker applying the advance are killed (the step half done),
            killed_at = timezone.now()
            for node in (nodes["web-1"], doomed):
                os.killpg(node.pid, signal.SIGKILL)
            wait_for(lambda: not any(alive(p) for p in group(nodes["web-1"]) + group(doomed)), seconds=30)
            holder.rollback()
            holder.close()
            wait_for(lambda: not backend_alive(backend), seconds=60, every=0.2)
            # then nothing of the half-made advance is left,
            assert reload(rollout).percent == 50
            assert transitions(rollout) == [("started", 10), ("advanced", 50)]
            simulate.wait(timeout=SIMULATE_SECONDS + 120)
        output = (tmp_path / "simulate.log").read_text()
        assert simulate.returncode == 0, output
        # the surviving worker advances at a later tick, once,
        wait_for(lambda: reload(rollout).percent == 100, seconds=60, every=0.2)
        advance = RolloutTransition.objects.get(rollout=rollout, percent=100)
        assert advance.at > killed_at
        # every acknowledged event is stored once, in its arm,
        acknowledged = ast.literal_eval(
            re.search(r"events acknowledged \(202\) per arm: (\{.*\})", output)[1]
        )
        wait_for(lambda: stored(rollout) == acknowledged, seconds=60, every=0.5)
        # resolve answered all along,
        assert resolves["failed"] == 0 and resolves["answered"] > 0
        rollout_promote(actor=actor_for(alice), rollout_id=rollout.pk)
        # and the rollout made each of its transitions exactly once.
        assert transitions(rollout) == [
            ("started", 10),
            ("advanced", 50),
            ("advanced", 100),
            ("succeeded", 100),
        ]
        print(
            f"\ncluster: killed web-1 and {doomed_name(nodes, doomed)} (SIGKILL) mid-step at 50%\n"
            f"events sent and acknowledged (202) per arm: {acknowledged}; stored per arm: {stored(rollout)}\n"
            f"resolves through the balancer: {resolves['answered']} answered, {resolves['failed']} failed\n"
            f"transitions: {transitions(rollout)}"
        )
        leftover = [process for node in nodes.values() for process in group(node)]
        # The cluster command stops what is left of it on SIGTERM, as on Ctrl-C.
        cluster.send_signal(signal.SIGTERM)
        assert cluster.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(process) for process in leftover), seconds=15)


def reload(rollout: Rollout) -> Rollout:
    return Rollout.objects.get(pk=rollout.pk)


def transitions(rollout: Rollout) -> list[tuple[str, int]]:
    return [
        (event, int(percent))
        for event, percent in RolloutTransition.objects.filter(rollout=rollout)
        .order_by("at", "id")
        .values_list("event", "percent")
    ]


def stored(rollout: Rollout) -> dict[str, int]:
    return {arm: stats.samples for arm, stats in arm_stats(rollout_id=rollout.pk).items() if stats.samples}


def cluster_nodes(pid: int) -> dict[str, psutil.Process]:
    """The cluster command's processes by node name (each the leader of its process group)."""
    nodes: dict[str, psutil.Process] = {}
    for child in psutil.Process(pid).children():
        command = " ".join(child.cmdline())
        if "granian" in command:
            nodes[f"web-{len([n for n in nodes if n.startswith('web')]) + 1}"] = child
        elif "--hostname node-" in command:
            nodes[re.search(r"--hostname (node-\d)@", command)[1]] = child  # type: ignore[index]
        elif "nginx" in command:
            nodes["balancer"] = child
    assert {"web-1", "web-2", "node-1", "node-2", "balancer"} <= set(nodes), nodes
    return nodes


def group(leader: psutil.Process) -> list[psutil.Process]:
    try:
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return [leader]


def worker_holding(nodes: dict[str, psutil.Process], client_port: int) -> psutil.Process:
    """The worker whose process group has the database connection from ``client_port``."""
    for name in ("node-1", "node-2"):
        for process in group(nodes[name]):
            if any(c.laddr and c.laddr.port == client_port for c in process.net_connections("tcp")):
                return nodes[name]
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def doomed_name(nodes: dict[str, psutil.Process], doomed: psutil.Process) -> str:
    return next(name for name, process in nodes.items() if process.pid == doomed.pid)


def workers_answering() -> int:
    return len(celery_app.control.ping(timeout=1.0))


def blocked_advance() -> tuple[int, int] | None:
    """(backend pid, client port) of the evaluation waiting to record its transition."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE '%rollouts_rollouttransition%'"
        )
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


@contextmanager
def resolving(url: str, key: str) -> Iterator[dict[str, int]]:
    """Resolve through ``url`` in a loop, each request on a new connection, until the end of the
    block; yields the counts of answered (200) and failed (anything else, or no answer)."""
    counts = {"answered": 0, "failed": 0}
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    counts["answered" if response.status == 200 else "failed"] += 1
            except (urllib.error.URLError, OSError):
                counts["failed"] += 1
            time.sleep(0.01)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield counts
    finally:
        done.set()
        thread.join()


@contextmanager
def simulating(env: dict[str, str], key: str, balancer: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py simulate` through the balancer for SIMULATE_SECONDS, its output in ``log``;
    killed at the end if still running."""
    command = [sys.executable, "manage.py", "simulate", "support.answer", "--base-url", balancer]
    command += ["--api-key", key, "--rate", "40", "--duration", str(SIMULATE_SECONDS), "--seed", "13"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=output)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
