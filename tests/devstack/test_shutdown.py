"""Ctrl-C or SIGTERM on the run command stops every process it started within 10 s, with
requests in flight, and leaves the port free.

The run command runs as `make run` runs it, on this test run's PostgreSQL and Redis, with a data
folder of its own and a free port; it is the leader of a process group of its own, so that
``os.killpg(..., SIGINT)`` is what a terminal's Ctrl-C does to its foreground group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
from django.conf import settings

from tests.factories import UserFactory, make_key
from tests.servers import alive, process_tree, running, wait_for

PROMPT = "demo.greeting"  # loaded by the run command
STOP_SECONDS = 10


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_stops_every_process_within_10_s_ten_times_in_a_row(run_env, tmp_path):
    key = make_key(UserFactory(username="traffic"), "read,ingest")

    for attempt in range(10):
        env = run_env(f"run-{attempt}")
        with running(env, tmp_path / f"run-{attempt}.log") as run:
            with traffic(env["PORT"], key) as answered:
                simulate(env, key)
                wait_for(lambda: answered["resolve"] > 0 and answered["events"] > 0, seconds=10)
                tree = process_tree(run.pid)

                os.killpg(run.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
                assert_everything_stops(run, tree, env, attempt=attempt)


@pytest.mark.django_db(transaction=True)
def test_sigterm_stops_every_process_within_10_s(run_env, tmp_path):
    key = make_key(UserFactory(username="traffic"), "read,ingest")
    env = run_env("run")
    with running(env, tmp_path / "run.log") as run:
        with traffic(env["PORT"], key) as answered:
            wait_for(lambda: answered["resolve"] > 0 and answered["events"] > 0, seconds=10)
            tree = process_tree(run.pid)

            run.send_signal(signal.SIGTERM)  # as a process manager stops a service
            assert_everything_stops(run, tree, env, attempt=0)


@contextmanager
def traffic(port: str, key: str) -> Iterator[dict[str, int]]:
    """A thread sending resolve and events requests in a loop until the end; yields the count
    of each answered with a success."""
    base = f"http://127.0.0.1:{port}/api/v1"
    answered = {"resolve": 0, "events": 0}
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                resolved = _send(f"{base}/prompts/{PROMPT}/resolve?unit=user-{answered['resolve']}", key)
                answered["resolve"] += 1
                event = {"event_id": str(uuid.uuid4()), "prompt": PROMPT, "version": resolved["version"]}
                _send(f"{base}/events", key, {"events": [event, {**event, "event_id": str(uuid.uuid4())}]})
                answered["events"] += 1
            except OSError:  # refused or cut off while the service stops
                time.sleep(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield answered
    finally:
        stop.set()
        thread.join(timeout=10)


def simulate(env: dict[str, str], key: str) -> None:
    """A short `manage.py simulate` against the running service."""
    subprocess.run(
        [sys.executable, "manage.py", "simulate", PROMPT, "--rate", "20", "--duration", "1"]
        + ["--api-key", key, "--base-url", f"http://127.0.0.1:{env['PORT']}"],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def assert_everything_stops(
    run: subprocess.Popen[bytes], tree: list[psutil.Process], env: dict[str, str], *, attempt: int
) -> None:
    """Within STOP_SECONDS of the signal, the run command and every process of its tree are gone
    and the ports (web and stream) are free."""
    deadline = time.monotonic() + STOP_SECONDS
    while (run.poll() is None or any(alive(p) for p in tree)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [f"{p.pid} {' '.join(p.cmdline()[1:4])}" for p in tree if alive(p)]
    assert not survivors, f"attempt {attempt}: alive {STOP_SECONDS} s after the signal: {survivors}"
    for port in (int(env["PORT"]), int(env["STREAM_PORT"])):
        assert _port_is_free(port), f"attempt {attempt}: port {port} is still held"


def _send(url: str, key: str, body: dict[str, object] | None = None) -> dict[str, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, object] = json.loads(response.read())
        return answer


def _port_is_free(port: int) -> bool:
    """Whether a server could listen on the port now (with SO_REUSEADDR, as servers bind, so the
    closed connections' TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True
