"""Fixtures for rollout tests: prompts with a candidate, a Celery worker of the test run, a
local HTTP server receiving webhooks, and a local Langfuse the langfuse source reads."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from pytest_django.fixtures import Settings

from config.celery import app as celery_app
from rollouts import tasks  # noqa: F401  (registers the tasks with the app)
from tests.factories import make_prompt
from tests.fakes.langfuse_server import FakeLangfuse, serve

WEBHOOK_SECRET = "s3cret-for-tests"


@pytest.fixture(autouse=True)
def _webhooks_to_loopback(settings: Settings) -> None:
    """Rollout tests' webhook receivers listen on 127.0.0.1, a private address."""
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def prompt(alice: Any) -> Any:
    """support.answer with v1 (production) and v2 (the candidate), owned by alice."""
    return make_prompt(alice, versions=2)


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[Any]:
    """A real Celery worker consuming the test broker, running in this process (threads pool)."""
    celery_app.control.purge()
    with start_worker(
        celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30
    ) as worker:
        yield worker


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_valid: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST, checks its signature, and answers ``statuses`` in turn (then 204)."""

    url: str = ""
    secret: str = WEBHOOK_SECRET
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout=timeout)
        return list(self.received)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            timestamp = self.headers.get("X-Promptramp-Timestamp", "")
            digest = hmac.new(receiver.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
            valid = hmac.compare_digest(
                self.headers.get("X-Promptramp-Signature", ""), f"sha256={digest.hexdigest()}"
            )
            status = receiver.statuses.pop(0) if receiver.statuses else 204
            self.send_response(status if valid else 401)
            self.end_headers()
            with receiver.arrived:
                receiver.received.append(Received(dict(self.headers), body, valid))
                receiver.arrived.notify_all()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/promptramp"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def langfuse(settings: Settings) -> Iterator[FakeLangfuse]:
    """A fake Langfuse, named by the settings as the real one would be."""
    state = FakeLangfuse()
    with serve(state) as url:
        settings.LANGFUSE_BASE_URL = url
        settings.LANGFUSE_PUBLIC_KEY = state.public_key
        settings.LANGFUSE_SECRET_KEY = state.secret_key
        yield state
