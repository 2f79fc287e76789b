"""Every request promptramp sends to another server: gate sources, webhooks, the Langfuse mirror.

One function, ``request`` (``post`` for the usual case), with the rules SPEC "Security and abuse"
sets for all of them:

- no redirects: a 3xx is an answer like any other (the caller treats it as a failure);
- a total deadline (connecting, sending, the headers and the whole body), enforced by closing
  the socket when it passes, so a server that drips bytes holds nothing longer than that;
- at most ``MAX_REPLY_BYTES`` of a reply are read (a longer one is an error);
- errors say what happened in our words: never a reply's body, never a URL's credentials;
- ``public_only`` (webhooks, whose URLs writers choose): the name is resolved once, every address
  it has must be public (not loopback, private, link-local, unique-local, shared or reserved),
  and the connection goes to the address that was checked, with the name kept for the Host
  header and for TLS (server name and certificate) — no second lookup that could answer
  differently.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEADLINE_SECONDS = 10.0
MAX_REPLY_BYTES = 1024 * 1024


class OutboundError(Exception):
    """The request did not get an answer; the message is safe to store and show."""


class AddressRefused(OutboundError):
    """``public_only`` and the name is (or resolves to) an address that is not public."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Target:
    """Where a URL leads: the name and port to speak to, and the address to connect to."""

    scheme: str
    host: str
    port: int
    path: str  # path and query
    family: socket.AddressFamily
    address: str


def safe_url(url: str) -> str:
    """``url`` as it may be shown: scheme, host and port only (no credentials, path or query —
    a Slack webhook's path is its secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an http or https URL with a host (and a port, if any, within 1-65535)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError unless absent or a number within 0-65535
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def public_address_problem(address: str) -> str | None:
    """Why ``address`` is not a public one, None when it is."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "not a public address"
    return None


def resolve(url: str, *, public_only: bool) -> Target:
    """The target of ``url``, its name resolved once. Raises OutboundError (AddressRefused when
    ``public_only`` and an address it resolves to is not public)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundError(f"{safe_url(url)} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundError(f"{safe_url(url)} has an invalid port") from None
    try:
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OutboundError(f"{safe_url(url)}: the name does not resolve") from None
    addresses = list(dict.fromkeys((info[0], str(info[4][0])) for info in found))
    if not addresses:
        raise OutboundError(f"{safe_url(url)}: the name does not resolve")
    if public_only:
        for _, address in addresses:
            problem = public_address_problem(address)
            if problem is not None:
                raise AddressRefused(f"{safe_url(url)} leads to {problem} ({address})")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    family, address = addresses[0]
    return Target(parts.scheme, parts.hostname, port, path, family, address)


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    deadline_seconds: float = DEADLINE_SECONDS,
    public_only: bool = False,
) -> Reply:
    """POST ``body`` to ``url`` under the rules above. Raises OutboundError without an answer."""
    return request("POST", url, body, headers, deadline_seconds=deadline_seconds, public_only=public_only)


def request(
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    deadline_seconds: float = DEADLINE_SECONDS,
    public_only: bool = False,
) -> Reply:
    """Send ``method`` to ``url`` under the rules above. Raises OutboundError without an answer."""
    deadline = time.monotonic() + deadline_seconds
    target = resolve(url, public_only=public_only)
    shown = safe_url(url)
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        sock.connect((target.address, target.port))  # the address checked: no lookup here
    except OSError as error:
        sock.close()
        raise OutboundError(f"{shown}: could not connect ({_reason(error)})") from None
    line = _Line(sock)
    timer = threading.Timer(max(deadline - time.monotonic(), 0.0), line.cut)
    timer.start()
    try:
        return _exchange(line, target, method, body, headers, deadline, shown)
    except (OSError, http.client.HTTPException) as error:
        if time.monotonic() >= deadline:
            raise OutboundError(f"{shown}: no complete answer within {deadline_seconds:g} s") from None
        raise OutboundError(f"{shown}: {_reason(error)}") from None
    finally:
        timer.cancel()
        line.sock.close()


class _Line:
    """The socket of one request, which the deadline's timer cuts (TLS replaces the socket)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def cut(self) -> None:
        """The deadline has passed: whatever is reading or writing now fails."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _exchange(
    line: _Line,
    target: Target,
    method: str,
    body: bytes | None,
    headers: Mapping[str, str],
    deadline: float,
    shown: str,
) -> Reply:
    if target.scheme == "https":
        line.sock = ssl.create_default_context().wrap_socket(line.sock, server_hostname=target.host)
    connection = http.client.HTTPConnection(target.host, target.port)
    connection.sock = line.sock  # connected to the checked address; Host: is the name
    line.sock.settimeout(max(deadline - time.monotonic(), 0.001))
    connection.request(method, target.path, body=body, headers=dict(headers))
    response = connection.getresponse()
    data = response.read(MAX_REPLY_BYTES + 1)
    if time.monotonic() >= deadline:  # the timer cut it: what was read may be a part
        raise TimeoutError
    if len(data) > MAX_REPLY_BYTES:
        raise OutboundError(f"{shown}: the answer is longer than {MAX_REPLY_BYTES} bytes")
    return Reply(response.status, {name.lower(): value for name, value in response.getheaders()}, data)


def _reason(error: BaseException) -> str:
    """What went wrong, in a few words of our own (never text the other server sent)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return "its TLS certificate could not be verified"
    if isinstance(error, ssl.SSLError):
        return "TLS failed"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "the connection was closed"
    if isinstance(error, http.client.HTTPException):
        return "the answer is not HTTP"
    return type(error).__name__
