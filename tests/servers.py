"""Real processes for tests: the web server and the stream process started as the run command
starts them, and the run command itself, on free ports of 127.0.0.1 with the environment given;
stopped by their PIDs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings

from core.state_cache import WARM_LOG_MARK
from devstack.stack import web_command


@dataclass
class Reply:
    status: int
    headers: Message  # names are case-insensitive: granian sends them in lower case
    body: Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, *, key: str | None = None, timeout: float = 5) -> Reply:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, json.loads(error.read() or b"null"))


def wait_for(predicate: Any, *, seconds: float, every: float = 0.05) -> float:
    """Call predicate() until it is true; returns the seconds it took, fails after ``seconds``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"still not true after {seconds} s")
        time.sleep(every)
    return time.monotonic() - started


@contextmanager
def web_server(env: dict[str, str], log: Path, *, workers: int = 2) -> Iterator[str]:
    """The web server as the run command starts it, with ``workers`` workers (two unless said);
    yields its base URL once every worker has loaded its state."""
    port = free_port()
    env = {**env, "WEB_CONCURRENCY": str(workers)}
    with serving_process(web_command("127.0.0.1", str(port), env), env, log, port) as url:
        wait_for(lambda: log.read_text().count(WARM_LOG_MARK) == workers, seconds=60, every=0.2)
        yield url


@contextmanager
def serving_process(command: list[str], env: dict[str, str], log: Path, port: int) -> Iterator[str]:
    """``command`` started with its output in ``log``; yields its base URL once its /healthz
    answers on ``port``, stops it at the end."""
    with open(log, "ab") as output:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url, process, log), seconds=60, every=0.2)
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], *, seconds: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``seconds``."""
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(
            f"{process.args[:3]} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        )
    try:
        return http_get(f"{url}/healthz", timeout=1).status == 200
    except OSError:
        return False


def database_url(settings_dict: dict[str, Any]) -> str:
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host, port = settings_dict.get("HOST") or "127.0.0.1", settings_dict.get("PORT") or 5432
    return f"postgresql://{credentials}{host}:{port}/{settings_dict['NAME']}"


def base_env(**overrides: str) -> dict[str, str]:
    return {**os.environ, **overrides}


@contextmanager
def running(
    env: dict[str, str], log: Path, command: tuple[str, ...] = ("devstack.stack", "run")
) -> Iterator[subprocess.Popen[bytes]]:
    """The run command (or ``command``: the cluster command), answering /readyz on PORT; whatever
    of its tree is left at the end is killed."""
    with open(log, "wb") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tree = [psutil.Process(run.pid)]
    try:
        wait_for(lambda: run_command_ready(env["PORT"], run, log), seconds=120, every=0.2)
        tree = process_tree(run.pid)
        yield run
    finally:
        # Left only after a failure: the processes this test started, by PID.
        leftovers = tree + (process_tree(run.pid) if run.poll() is None else [])
        for process in leftovers:
            if alive(process):
                process.kill()
        run.wait()


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def run_command_ready(port: str, run: subprocess.Popen[bytes], log: Path) -> bool:
    if run.poll() is not None:
        raise AssertionError(f"the run command exited with {run.returncode}:\n{log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py ARGS`` run with ``env``; its output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
