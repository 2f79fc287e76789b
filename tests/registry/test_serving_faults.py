"""Resolve keeps answering from the last good state while PostgreSQL or Redis is down, marked
stale, and answers fresh once they are back. The test runs its own embedded PostgreSQL and
Redis (whatever else is configured) and a real web process on them."""

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from config import embedded_services
from tests.registry.servers import base_env, http_get, wait_for, web_server

RESOLVE = "/api/v1/prompts/demo.greeting/resolve?unit=user-1"


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _all_stale(url: str, key: str) -> bool:
    """Every answer of ten stale: each worker process judges on its own."""
    return all([_is_stale(url, key) for _ in range(10)])


def _all_fresh(url: str, key: str) -> bool:
    return not any([_is_stale(url, key) for _ in range(10)])


def _is_stale(url: str, key: str) -> bool:
    reply = http_get(url + RESOLVE, key=key)
    assert reply.status == 200 and reply.body["version"] == 1
    assert ("X-Promptramp-Stale" in reply.headers) == (reply.body.get("stale") is True)
    return reply.body.get("stale") is True


@pytest.fixture
def services_root() -> Iterator[Path]:
    """A folder for the test's own PostgreSQL and Redis. Not under pytest's tmp_path: PostgreSQL
    runs as another user when we are root, and pytest keeps its base folder private."""
    with tempfile.TemporaryDirectory(prefix="promptramp-faults-") as folder:
        yield Path(folder)


def test_resolve_is_served_stale_while_postgres_or_redis_is_down_and_fresh_after(services_root, tmp_path):
    root = services_root
    urls = embedded_services.ensure_running(root=root, services=["postgres", "redis"]).urls
    try:
        env = base_env(
            DATABASE_URL=urls["DATABASE_URL"],
            REDIS_URL=urls["REDIS_URL"],
            CELERY_BROKER_URL=urls["REDIS_URL"],
            PROMPTRAMP_DATA_DIR=str(root),
            PROMPTRAMP_ADMIN_USER="admin",
            PROMPTRAMP_ADMIN_PASSWORD="fault-test-password",
        )
        _manage(env, "migrate", "--no-input", "-v", "0")
        _manage(env, "ensure_admin")
        _manage(env, "load_demo")
        key = _manage(env, "create_api_key", "fault-test", "--user", "admin", "--scopes", "read").split()[-1]

        with web_server(env, tmp_path / "web.log") as url:
            assert _all_fresh(url, key)

            embedded_services.stop(["postgres"], root=root)
            wait_for(lambda: _all_stale(url, key), seconds=5)
            assert _all_stale(url, key)
            snapshot = http_get(url + "/api/v1/snapshot", key=key)
            assert snapshot.status == 200 and snapshot.headers["X-Promptramp-Stale"] == "1"

            embedded_services.ensure_running(root=root, services=["postgres"])
            wait_for(lambda: _all_fresh(url, key), seconds=5)

            embedded_services.stop(["redis"], root=root)
            wait_for(lambda: _all_stale(url, key), seconds=5)
            assert _all_stale(url, key)

            embedded_services.ensure_running(root=root, services=["redis"])
            wait_for(lambda: _all_fresh(url, key), seconds=5)
    finally:
        embedded_services.stop(["postgres", "redis"], root=root)
