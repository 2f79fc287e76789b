"""What a server we call can do to us, and where a writer's URL can make us go: the outbound
helper follows no redirect, stops at its deadline however slowly the answer comes, reads at most
1 MiB, never repeats a reply or a credential, and (for URLs writers choose) connects only to
public addresses — the one it checked. Name resolution is stubbed: no packet leaves loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.outbound import MAX_REPLY_BYTES, AddressRefused, OutboundError, post, public_address_problem

SECRET_REPLY = b"root:x:0:0:the reply of an internal service"


@pytest.fixture
def local_server() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    """local_server(answer) -> the base URL of a server on 127.0.0.1 answering every POST with
    answer(handler); the requests' headers are kept in ``received``."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(dict(self.headers))
                answer(self)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


received: list[dict[str, str]] = []


def _answer(status: int, body: bytes, **headers: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def test_a_redirect_is_answered_not_followed(local_server):
    target = local_server(_answer(200, b"followed"))
    redirecting = local_server(_answer(302, b"", Location=target + "/internal"))
    received.clear()

    reply = post(redirecting + "/hook", b"{}", {})

    assert reply.status == 302
    assert len(received) == 1  # only the redirecting server was asked


def test_a_server_that_drips_its_answer_is_cut_off_at_the_deadline(local_server):
    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)  # each byte well within any per-read timeout

    url = local_server(drip)
    started = time.monotonic()

    with pytest.raises(OutboundError, match="within 1 s"):
        post(url, b"{}", {}, deadline_seconds=1.0)
    assert time.monotonic() - started < 1.5


def test_an_answer_over_one_mib_is_refused(local_server):
    url = local_server(_answer(200, b"x" * (MAX_REPLY_BYTES + 10)))

    with pytest.raises(OutboundError, match="longer than"):
        post(url, b"{}", {})


def test_errors_carry_neither_the_reply_nor_the_credentials_nor_the_path(local_server):
    url = local_server(_answer(200, SECRET_REPLY)).replace("http://", "http://user:hunter2@")
    closed_port = _closed_port()

    for failing in (
        f"http://user:hunter2@127.0.0.1:{closed_port}/services/T000/B000/slack-path-secret",
        url.replace("http://", "ftp://"),
    ):
        with pytest.raises(OutboundError) as refusal:
            post(failing, b"{}", {})
        message = str(refusal.value)
        assert "hunter2" not in message and "slack-path-secret" not in message and "user" not in message


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "192.168.1.20", "100.64.0.1", "::1", "fd00::1"]
)
def test_a_public_only_request_to_a_name_resolving_to_a_private_address_connects_nowhere(
    address, monkeypatch
):
    attempts = _record_connections(monkeypatch)
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to(address))

    with pytest.raises(AddressRefused, match=address):
        post("https://hooks.example.com/hook", b"{}", {}, public_only=True)
    assert attempts == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://10.0.0.1/", "http://169.254.169.254/latest/"])
def test_a_public_only_request_to_a_private_literal_connects_nowhere(url, monkeypatch):
    attempts = _record_connections(monkeypatch)

    with pytest.raises(AddressRefused):
        post(url, b"{}", {}, public_only=True)
    assert attempts == []


def test_the_connection_goes_to_the_address_checked_with_the_name_as_host(local_server, monkeypatch):
    """The name is resolved once: a resolver that would answer differently the second time (DNS
    rebinding) is never asked again."""
    url = local_server(_answer(204, b""))
    port = int(url.rsplit(":", 1)[1])
    lookups: list[str] = []

    def rebinding(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"  # never off loopback
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    received.clear()

    reply = post(f"http://hooks.example.com:{port}/hook", b"{}", {})

    assert reply.status == 204
    assert lookups == ["hooks.example.com"]
    assert received[0]["Host"] == f"hooks.example.com:{port}"


def test_public_addresses_are_told_apart_from_the_others():
    assert public_address_problem("93.184.216.34") is None
    assert public_address_problem("2606:2800:220:1:248:1893:25c8:1946") is None
    assert public_address_problem("::ffff:10.0.0.1") == "a private address"
    assert public_address_problem("0.0.0.0") is not None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _resolving_to(address: str) -> Callable[..., list[tuple[object, ...]]]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


def _record_connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection attempted from now on, refused before a packet is sent."""
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise ConnectionRefusedError("no connection in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts
