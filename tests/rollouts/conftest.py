"""Fixtures for rollout tests: prompts with a candidate and a local HTTP server receiving
webhooks."""

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
from pytest_django.fixtures import Settings

from tests.factories import make_prompt

WEBHOOK_SECRET = "s3cret-for-tests"


@pytest.fixture(autouse=True)
def _webhooks_to_loopback(settings: Settings) -> None:
    """Rollout tests' webhook receivers listen on 127.0.0.1, a private address."""
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def prompt(alice: Any) -> Any:
    """support.answer with v1 (production) and v2 (the candidate), owned by alice."""
    return make_prompt(alice, versions=2)


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
