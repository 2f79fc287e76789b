"""The run and test commands: embedded services, set-up, and the processes of the service.

    python -m devstack.stack run              # what `make run` does
    python -m devstack.stack test [ARGS]      # what `make test` does; ARGS go to pytest
    python -m devstack.stack services up|down|status

Embedded PostgreSQL/Redis are started only for what DATABASE_URL / REDIS_URL leave unset, and
stopped on exit only when this command started them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from core.secret_files import kept_secret
from devstack import embedded_services

PYTHON = sys.executable


def prepare_environment() -> list[str]:
    """Make the environment complete: SECRET_KEY and service URLs. Returns the services started."""
    root = embedded_services.data_dir()
    root.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("SECRET_KEY"):
        os.environ["SECRET_KEY"] = kept_secret(root / "secret_key")
    result = embedded_services.ensure_running(root)
    for name, url in result.urls.items():
        os.environ.setdefault(name, url)
    return result.started


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":…@", 1)))


def _manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], check=True)


def run() -> int:
    stop_signals = StopSignals()
    started: list[str] = []
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with stop_signals.held():  # a service started but not yet recorded would be left running
            started = prepare_environment()
        os.environ.setdefault("PROMPTRAMP_LOG_FORMAT", "text")  # for a person at a terminal
        user, password_note = set_up()
        host = os.environ.get("HOST", "127.0.0.1")
        port = os.environ.get("PORT", "8000")
        stream_port = os.environ.setdefault("STREAM_PORT", str(int(port) + 1))
        prepare_metrics_dir()
        commands = [
            web_command(host, port),
            stream_command(host, stream_port),
            *worker_commands(),
            beat_command(),
        ]
        with stop_signals.held():
            for command in commands:
                processes.append(subprocess.Popen(command, start_new_session=True))
        print(
            f"\npromptramp is running: http://{host}:{port}/admin/  "
            f"(user {user!r}, {password_note})\n"
            f"API: http://{host}:{port}/api/v1/   docs: http://{host}:{port}/api/v1/docs/\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        return _wait(processes)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_signals.ignore()  # a second Ctrl-C must not cut the clean-up short
        terminate(processes)
        embedded_services.stop(started)


def set_up() -> tuple[str, str]:
    """Migrate, collect the static files, ensure the admin and load the demo prompt; returns the
    admin's name and where its password is."""
    _manage("migrate", "--no-input", "-v", "0")
    _manage("collectstatic", "--no-input", "-v", "0")
    user = os.environ.get("PROMPTRAMP_ADMIN_USER", "admin")
    password_file = embedded_services.data_dir() / "admin_password"
    _manage("ensure_admin", "--password-file", str(password_file))
    password_note = (
        "password: PROMPTRAMP_ADMIN_PASSWORD"
        if os.environ.get("PROMPTRAMP_ADMIN_PASSWORD")
        else f"password in {password_file}"
        if password_file.exists()
        else "password as set before"
    )
    _manage("load_demo")
    return user, password_note


def web_command(host: str, port: str, env: Mapping[str, str] = os.environ) -> list[str]:
    """The web server as the run command starts it: WEB_SERVER (granian, the default, or
    gunicorn) with WEB_CONCURRENCY worker processes (default 2), each running the WSGI
    application in WEB_THREADS threads (granian's blocking threads, default 1: Python threads of
    one process contend for its GIL, which cost resolve a third of its throughput at 4; or
    gunicorn's gthread threads, default 4; WEB_WORKER_CLASS picks another gunicorn worker class).
    No access log: the application logs each request itself, never its query string
    (core.request_log). docs/benchmarks.md has the measurements behind these choices."""
    server = env.get("WEB_SERVER", "granian")
    workers = env.get("WEB_CONCURRENCY", "2")
    threads = env.get("WEB_THREADS", "1" if server == "granian" else "4")
    if server == "gunicorn":
        return [PYTHON, "-m", "gunicorn", "config.wsgi", "--bind", f"{host}:{port}", "--workers", workers] + [
            "--worker-class",
            env.get("WEB_WORKER_CLASS", "gthread"),
            "--threads",
            threads,
        ]
    if server != "granian":
        raise ValueError(f"WEB_SERVER must be granian or gunicorn, not {server!r}")
    return (
        [PYTHON, "-m", "granian", "config.wsgi:application", "--interface", "wsgi", "--http", "1"]
        + ["--host", host, "--port", port, "--workers", workers, "--respawn-failed-workers"]
        + ["--blocking-threads", threads, "--no-ws"]
        # A worker that misses the signal (seen with Ctrl-C's SIGINT) is killed after 3 s.
        + ["--workers-kill-timeout", "3"]
    )


QUEUES = ("controller", "ingest", "outbound")


def worker_commands(env: Mapping[str, str] = os.environ) -> list[list[str]]:
    """One Celery worker process per queue (config/settings.py says which task goes where), so a
    slow webhook (`outbound`) never delays the outcome flush (`ingest`) or the tick
    (`controller`): CELERY_CONCURRENCY tasks at a time each (default 2)."""
    return [worker_command(f"{queue}@%h", [queue], env) for queue in QUEUES]


def worker_command(hostname: str, queues: Sequence[str], env: Mapping[str, str] = os.environ) -> list[str]:
    """A Celery worker named ``hostname`` consuming ``queues``, CELERY_CONCURRENCY tasks at a time
    (default 2)."""
    return [PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO"] + [
        "--queues",
        ",".join(queues),
        "--hostname",
        hostname,
        "--concurrency",
        env.get("CELERY_CONCURRENCY", "2"),
    ]


def beat_command() -> list[str]:
    """Celery beat, the one process that schedules the tick and the flush (there is one beat
    however many workers), its schedule file under the data folder."""
    schedule = embedded_services.data_dir() / "celerybeat-schedule"
    return [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]


def stream_command(host: str, port: str) -> list[str]:
    """The stream process (GET /api/v1/snapshot/stream): uvicorn serving config.asgi, one
    process whose open streams are cut after 1 s when it stops (clients reconnect)."""
    return [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", port] + [
        "--lifespan",
        "on",
        "--timeout-graceful-shutdown",
        "1",
        "--no-access-log",
    ]


def prepare_metrics_dir() -> None:
    """Prometheus samples of every process go to PROMETHEUS_MULTIPROC_DIR (default
    <data dir>/prometheus), emptied here: counters start from zero with the service."""
    folder = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or embedded_services.data_dir() / "prometheus")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


class StopSignals:
    """From its creation on, SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the run command: they raise
    KeyboardInterrupt, except inside ``held()``, which postpones the stop to its end."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self._holding = False
        self._pending = False
        for signum in self.SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            raise KeyboardInterrupt

    def ignore(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def _wait(processes: list[subprocess.Popen[bytes]]) -> int:
    """Until a process exits (its exit code) or a stop signal (KeyboardInterrupt)."""
    while True:
        for process in processes:
            if process.poll() is not None:
                command = process.args if isinstance(process.args, list) else [process.args]
                print(f"{command[2:4]} exited with {process.returncode}", file=sys.stderr)
                return process.returncode or 1
        time.sleep(0.2)


# The run command stops everything within 10 s: its children get this long to finish in flight.
GRACE_SECONDS = 7.0


def terminate(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the children, each the leader of a process group of its own (start_new_session).

    Each leader gets one SIGTERM and stops its own workers: signalling every process at once, as
    a terminal's Ctrl-C does to its foreground group, deadlocked a gunicorn gthread worker that got
    SIGINT from the terminal and SIGQUIT from its master (two nested ThreadPoolExecutor.shutdown
    calls in signal handlers), and the worker outlived the run command holding the port. Once the
    leaders are gone, or after GRACE_SECONDS, SIGKILL goes to every group, so nothing a leader
    left behind survives."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def test(pytest_args: list[str]) -> int:
    redis_configured = bool(os.environ.get("REDIS_URL"))
    started = prepare_environment()
    try:
        if not redis_configured:
            # The embedded Redis may serve a running service too: tests use databases of their own.
            os.environ["REDIS_URL"] = _with_redis_db(os.environ["REDIS_URL"], 1)
        os.environ.setdefault("CELERY_BROKER_URL", _with_redis_db(os.environ["REDIS_URL"], 2))
        # Limits off, for every process of the run; the tests of limits turn them on.
        for limit in ("PROMPTRAMP_RATE_SERVE", "PROMPTRAMP_RATE_EVENTS", "PROMPTRAMP_RATE_API"):
            os.environ[limit] = "0"
        os.environ["PROMPTRAMP_LOGIN_FAILURES"] = "0"
        _manage("collectstatic", "--no-input", "-v", "0")
        return subprocess.call([PYTHON, "-m", "pytest", *pytest_args])
    finally:
        embedded_services.stop(started)


def services(action: str) -> int:
    if action == "up":
        started = prepare_environment()
        print("started: " + (", ".join(started) or "nothing (already running or configured)"))
        for name, url in embedded_services.read_urls().items():
            print(f"{name}={_without_password(url)}")
        print(f"(with their passwords: {embedded_services.services_file()})")
    elif action == "down":
        embedded_services.stop(["postgres", "redis"])
    else:
        for name, running in embedded_services.status().items():
            print(f"{name}: {'running' if running else 'stopped'}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        return run()
    if argv[:1] == ["test"]:
        return test(argv[1:])
    if argv[:1] == ["services"] and argv[1:2] in (["up"], ["down"], ["status"]):
        return services(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
