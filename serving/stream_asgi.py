"""``GET /api/v1/snapshot/stream``: the snapshot and its changes as Server-Sent Events, answered
by the stream process (``config.asgi`` under uvicorn) before Django's ASGI handler, as
``serving.fast_path`` answers resolve before Django's WSGI handler. Only the stream
process serves this path: the web server has no route for it (404).

The Host, the key (``bearer_key_answer``, scope ``read``) and the key's ``serve`` rate limit
(each connect counts; a wrong key counts against the client address's) are checked, and each
stream logged (``core.request_log``), as on the resolve fast path; what the stream sends comes
from ``serving.stream.StreamHub``, started and stopped with the process (ASGI lifespan).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from django.conf import settings

from access.services import hash_key
from access.throttling import requester
from core.rate_limits import rate_limiter
from core.request_log import request_begin, request_end, trace_headers
from serving.answers import Answer, bearer_key_answer, error_answer, rate_limited_answer
from serving.fast_path import HOST_REFUSED, SECURITY_HEADERS, host_allowed
from serving.stream import StreamHub

STREAM_PATH = "/api/v1/snapshot/stream"
STREAM_ROUTE = "api/v1/snapshot/stream"  # its name in the request log
Scope = dict[str, Any]  # the types of Django's ASGIHandler
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # proxies such as nginx pass each event on at once
] + [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS]


def snapshot_stream_path(app: ASGIApp) -> ASGIApp:
    hub = StreamHub(keepalive_seconds=settings.PROMPTRAMP_STREAM_KEEPALIVE_SECONDS)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(hub, receive, send)
        elif scope["type"] == "http" and scope["path"] == STREAM_PATH:
            hub.start()  # started already, unless the server does not speak the lifespan protocol
            await _logged_stream(hub, scope, receive, send)
        else:
            await app(scope, receive, send)

    return application


async def _lifespan(hub: StreamHub, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            hub.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await hub.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _logged_stream(hub: StreamHub, scope: Scope, receive: Receive, send: Send) -> None:
    """The stream, logged as a request (core.request_log) when it ends: its duration is the
    connection's."""
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    begun = request_begin(headers.get("traceparent"))
    status = 500
    try:
        status = await _stream(hub, scope, headers, receive, send, _as_asgi(trace_headers(begun[0])))
    finally:
        request_end(begun, route=STREAM_ROUTE, method=scope["method"], status=status)


def _as_asgi(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers]


async def _stream(
    hub: StreamHub,
    scope: Scope,
    headers: dict[str, str],
    receive: Receive,
    send: Send,
    trace: list[tuple[bytes, bytes]],
) -> int:
    """Streams until the client leaves or the key may no longer read; the status answered."""
    refusal = await _refusal(hub, scope, headers)
    if refusal is not None:
        status, answer_headers, body = refusal
        await send(
            {"type": "http.response.start", "status": status, "headers": _as_asgi(answer_headers) + trace}
        )
        await send({"type": "http.response.body", "body": body})
        return status
    key_hash = hash_key(headers["authorization"].partition(" ")[2].strip())
    events = hub.events(key_hash, headers.get("last-event-id", ""))
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS + trace})

    async def forward() -> None:
        async for chunk in events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})  # the key may no longer read

    sending, disconnected = asyncio.ensure_future(forward()), asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((sending, disconnected), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sending.cancel()
        disconnected.cancel()
        await asyncio.gather(sending, disconnected, return_exceptions=True)
    if not sending.cancelled():
        sending.result()  # raises what went wrong while sending
    return 200


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _refusal(hub: StreamHub, scope: Scope, headers: dict[str, str]) -> Answer | None:
    """None when this request may stream; else the error answer."""
    method = scope["method"]
    if method != "GET":
        return error_answer(405, "method_not_allowed", f'Method "{method}" not allowed.')
    if not host_allowed(headers.get("host", "")):
        return HOST_REFUSED
    peer = scope["client"][0] if scope.get("client") else ""
    address = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}
    check = partial(bearer_key_answer, meta=address, kind="serve")
    key = await hub.check_key(check, headers.get("authorization", ""))
    if isinstance(key, tuple):
        return key
    wait = rate_limiter.retry_after("serve", requester(key, {}))
    return None if wait is None else rate_limited_answer(wait)
