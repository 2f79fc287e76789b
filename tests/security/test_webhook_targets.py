"""Where an admin's webhook URL can make promptramp go: only to public addresses, checked when the
webhook is created and again at each delivery (after DNS resolution, connecting to the address
checked), never further on a redirect; and a slow receiver never gets a message twice because a
claim ran out. Name resolution is stubbed: no packet leaves loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from core.actors import Actor
from rollouts import webhooks
from rollouts.models import Outbox, Webhook, WebhookDelivery
from rollouts.services import rollout_create
from tests.factories import actor_for, make_prompt

PRIVATE = ["127.0.0.1", "10.0.0.1", "169.254.169.254"]
PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.fixture
def admin(admin_user: Any, client_with_key: Any) -> Any:
    return client_with_key(admin_user, "admin")


@pytest.fixture
def outside_loopback(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection attempted to an address other than 127.0.0.1 (refused before a packet
    is sent); connections to 127.0.0.1 (our PostgreSQL, Redis and receivers) go through."""
    attempts: list[object] = []
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] == "127.0.0.1":
            return connect(sock, address)
        attempts.append(address)
        raise ConnectionRefusedError("no connection off loopback in this test")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


@pytest.fixture
def receiver() -> Iterator[Callable[..., tuple[str, list[dict[str, str]]]]]:
    """receiver(status=204, delay=0, **headers) -> (URL on 127.0.0.1, the requests' headers)."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int = 204, delay: float = 0.0, **headers: str) -> tuple[str, list[dict[str, str]]]:
        received: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(dict(self.headers))
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/hook", received

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


REAL_GETADDRINFO = socket.getaddrinfo


def resolving_to(address: str) -> Callable[..., list[tuple[object, ...]]]:
    """Name resolution where the webhooks' names (``*.example``) lead to ``address``, and our
    own services' names resolve as usual."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[object, ...]]:
        if not host.endswith(".example"):
            return list(REAL_GETADDRINFO(host, port, *args, **kwargs))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


ROLLOUT_STARTED = ["rollout.started"]  # not the registry's events of the rollout's prompt


def start_rollout(owner: Any) -> None:
    make_prompt(owner, versions=2)
    rollout_create(actor=actor_for(owner), prompt_name="support.answer", candidate_version=2, plan=PLAN)


@pytest.mark.django_db
@pytest.mark.parametrize("address", PRIVATE)
def test_a_webhook_to_a_private_address_is_refused_at_creation(address, admin, outside_loopback):
    response = admin.post(
        "/api/v1/webhooks",
        {"url": f"http://{address}/latest/meta-data", "secret": "long-enough"},
        format="json",
    )

    assert response.status_code == 400
    assert address in response.json()["error"]["message"]
    assert not Webhook.objects.exists()
    assert outside_loopback == []


@pytest.mark.django_db
@pytest.mark.parametrize("address", PRIVATE)
def test_a_webhook_to_a_name_resolving_to_a_private_address_is_refused_at_creation(
    address, admin, outside_loopback, monkeypatch
):
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(address))

    response = admin.post(
        "/api/v1/webhooks",
        {"url": "https://hooks.attacker.example/x", "secret": "long-enough"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"url": "https://hooks.attacker.example"}
    assert not Webhook.objects.exists()
    assert outside_loopback == []


@pytest.mark.django_db
@pytest.mark.parametrize("address", PRIVATE)
def test_a_name_that_turns_private_after_creation_is_refused_at_delivery(
    address, admin, alice, outside_loopback, monkeypatch, receiver
):
    # Given a webhook whose name resolved to a public address when it was created
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("93.184.216.34"))
    created = admin.post(
        "/api/v1/webhooks",
        {"url": "http://hooks.rebinding.example/x", "secret": "long-enough", "events": ["rollout.started"]},
        format="json",
    )
    assert created.status_code == 201
    start_rollout(alice)
    # When the name now resolves to a private address and the message is delivered
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(address))
    webhooks.outbox_deliver_due(now=timezone.now())

    # Then the attempt is refused, recorded as such, and no connection was attempted
    attempt = WebhookDelivery.objects.get()
    assert not attempt.succeeded and attempt.status_code is None
    assert address in attempt.error
    assert outside_loopback == []


@pytest.mark.django_db
def test_a_redirect_to_a_private_address_is_not_followed(alice, outside_loopback, receiver, settings):
    # Given a receiver (allowed: on the operator's network) answering with a redirect to metadata
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    url, received = receiver(status=302, Location="http://169.254.169.254/latest/meta-data")
    webhooks.webhook_create(actor=Actor.system(), url=url, secret="long-enough", events=ROLLOUT_STARTED)
    start_rollout(alice)

    # When the message is delivered
    webhooks.outbox_deliver_due(now=timezone.now())

    # Then the redirect is a failed attempt, and nothing went to where it pointed
    assert WebhookDelivery.objects.get().error == "HTTP 302"
    assert len(received) == 1
    assert outside_loopback == []


@pytest.mark.django_db
def test_with_private_addresses_allowed_a_local_receiver_gets_its_messages(alice, receiver, settings):
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    url, received = receiver()
    webhooks.webhook_create(actor=Actor.system(), url=url, secret="long-enough", events=ROLLOUT_STARTED)
    start_rollout(alice)

    webhooks.outbox_deliver_due(now=timezone.now())

    assert WebhookDelivery.objects.get().succeeded
    assert [headers["X-Promptramp-Event"] for headers in received] == ["rollout.started"]


@pytest.mark.django_db(transaction=True)
def test_a_slow_receiver_never_gets_a_message_twice_from_two_workers(alice, receiver, settings, monkeypatch):
    # Given two messages to a receiver that takes 0.8 s each, and claims of 1 s
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    monkeypatch.setattr(webhooks, "CLAIM_SECONDS", 1.0)
    url, received = receiver(delay=0.8)
    for _ in range(2):
        webhooks.webhook_create(actor=Actor.system(), url=url, secret="long-enough", events=ROLLOUT_STARTED)
    start_rollout(alice)
    assert Outbox.objects.count() == 2
    started = timezone.now()

    # When one worker delivers what is due, and a second one starts 1.2 s later (while the first
    # sends the second message)
    def worker(delay: float) -> None:
        time.sleep(delay)
        try:
            webhooks.outbox_deliver_due(now=started + timezone.timedelta(seconds=delay))
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(delay,)) for delay in (0.0, 1.2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)

    # Then every message was sent exactly once
    deliveries = [headers["X-Promptramp-Delivery"] for headers in received]
    assert sorted(deliveries) == sorted(str(pk) for pk in Outbox.objects.values_list("pk", flat=True))
    assert Outbox.objects.filter(delivered_at__isnull=True).count() == 0
