from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection
from hypothesis import settings as hypothesis_settings
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from config.celery import app as celery_app
from core import log_lines
from core.redis_client import get_redis
from core.state_cache import StateCache
from devstack import embedded_services
from outcomes.event_targets import rollouts_cache, versions_cache
from registry import tasks as registry_tasks  # noqa: F401  (registers the tasks with the app)
from rollouts import tasks as rollouts_tasks  # noqa: F401
from tests.factories import UserFactory, make_key
from tests.fakes.langfuse_server import FakeLangfuse, serve
from tests.servers import base_env, database_url, free_port, manage

hypothesis_settings.register_profile("ci", deadline=None, max_examples=200)
hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session", autouse=True)
def _clean_redis(django_db_blocker: Any) -> None:
    """Tests run on Redis databases of their own (see devstack.stack.test); start them empty."""
    get_redis().flushdb()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's, and before it drops the test database, the end of the state caches'
    builder threads: each holds a connection to it until then."""
    yield
    for cache in StateCache.instances:
        cache.stop_builder()


@pytest.fixture(autouse=True)
def _fresh_state_caches() -> Iterator[None]:
    for cache in StateCache.instances:
        cache.clear()
    versions_cache.clear()
    rollouts_cache.clear()
    yield


@pytest.fixture
def admin_user(db: None) -> Any:
    return UserFactory(username="root", is_superuser=True)


@pytest.fixture
def alice(db: None) -> Any:
    return UserFactory(username="alice")


@pytest.fixture
def bob(db: None) -> Any:
    return UserFactory(username="bob")


@pytest.fixture
def client_with_key() -> Callable[..., APIClient]:
    """client_with_key(user, "read,write") -> an APIClient sending a fresh key of those scopes."""

    def make(user: Any, scopes: str = "read") -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(user, scopes)}")
        return client

    return make


@pytest.fixture
def redis_url() -> str:
    return str(settings.REDIS_URL)


@pytest.fixture
def run_env(tmp_path: Path) -> Callable[[str], dict[str, str]]:
    """run_env(name) -> the environment of one run command, with a data folder of its own."""

    def make(name: str) -> dict[str, str]:
        env = base_env(
            DATABASE_URL=database_url(connection.settings_dict),
            REDIS_URL=settings.REDIS_URL,
            CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
            PROMPTRAMP_DATA_DIR=str(tmp_path / name),
            PROMPTRAMP_ADMIN_PASSWORD="shutdown-test",
            PORT=str(free_port()),
            STREAM_PORT=str(free_port()),  # PORT + 1 may be taken by anything else
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the run command empties it: its own, in its data
        return env

    return make


@pytest.fixture
def services_root() -> Iterator[Path]:
    """A folder for the test's own PostgreSQL and Redis. Not under pytest's tmp_path: PostgreSQL
    runs as another user when we are root, and pytest keeps its base folder private."""
    with tempfile.TemporaryDirectory(prefix="promptramp-services-") as folder:
        root = Path(folder)
        try:
            yield root
        finally:
            embedded_services.stop(["postgres", "redis"], root)


@dataclass
class OwnService:
    root: Path
    env: dict[str, str]
    key: str  # scopes read and ingest


@pytest.fixture
def own_service(services_root: Path) -> Iterator[OwnService]:
    """PostgreSQL and Redis of the test's own, migrated, with the demo prompt and a key."""
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
        manage(env, "migrate", "--no-input", "-v", "0")
        manage(env, "ensure_admin")
        manage(env, "load_demo")
        created = manage(env, "create_api_key", "fault-test", "--user", "admin", "--scopes", "read,ingest")
        yield OwnService(root, env, created.split()[-1])
    finally:
        embedded_services.stop(["postgres", "redis"], root=root)


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[Any]:
    """A real Celery worker consuming the test broker, running in this process (threads pool)."""
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker


@pytest.fixture
def langfuse(settings: Settings) -> Iterator[FakeLangfuse]:
    """A fake Langfuse, named by the settings as the real one would be."""
    state = FakeLangfuse()
    with serve(state) as url:
        settings.LANGFUSE_BASE_URL = url
        settings.LANGFUSE_PUBLIC_KEY = state.public_key
        settings.LANGFUSE_SECRET_KEY = state.secret_key
        yield state


@dataclass
class CapturedLines:
    """The log lines this process wrote (core.log_lines) since the fixture began."""

    path: Path

    def text(self) -> str:
        log_lines.buffer.flush()
        return self.path.read_text()

    def read(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.text().splitlines()]

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.read() if "route" in line]


@pytest.fixture
def captured_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturedLines]:
    path = tmp_path / "lines.log"
    with open(path, "ab") as output:
        monkeypatch.setattr(log_lines, "buffer", log_lines.LineBuffer(output.fileno()))
        yield CapturedLines(path)
        log_lines.buffer.flush()
