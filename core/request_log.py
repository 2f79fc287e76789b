"""One log line per request, on every path: Django's views (``RequestLogMiddleware``, first in
settings.MIDDLEWARE), the WSGI fast resolve path (``serving.fast_path``) and the snapshot stream
(``serving.stream_asgi``) call ``request_begin`` and ``request_end``.

A line holds the time, level (``error`` for a 5xx), request id, trace id, route (the URL
pattern, e.g. ``api/v1/prompts/<str:name>/resolve``: never the path a client sent, never a
query string), method, status, duration in milliseconds and the API key's prefix
(``pr_xxxxxxxx``, once the key is known; never the key). Nothing of a request's content — no
unit, variable or attribute value — is in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import Token
from typing import Any

from django.http import HttpRequest, HttpResponse

from core import log_lines
from core.trace_context import REQUEST_ID_HEADER, TRACEPARENT_HEADER, TraceContext, current, trace_of

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
Begun = tuple[TraceContext, Token[TraceContext | None], float]
# Set by core.tracing when OpenTelemetry is on: the context of the span the instrumentation opened.
traced_context: Callable[[str | None], TraceContext] | None = None


def request_begin(traceparent: str | None) -> Begun:
    context = (traced_context or trace_of)(traceparent)
    return context, current.set(context), time.perf_counter()


def request_end(begun: Begun, *, route: str | None, method: str, status: int) -> None:
    context, token, started = begun
    current.reset(token)
    if not log_lines.buffer.requests:
        return
    log_lines.buffer.append(
        {
            "time": time.time(),
            "level": "error" if status >= 500 else "info",
            "request_id": context.request_id,
            "trace_id": context.trace_id,
            "route": route,
            "method": method if method in METHODS else "OTHER",
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "key_prefix": context.key_prefix,
        }
    )


def trace_headers(context: TraceContext) -> list[tuple[str, str]]:
    return [(TRACEPARENT_HEADER, context.traceparent()), (REQUEST_ID_HEADER, context.request_id)]


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        begun = request_begin(request.META.get("HTTP_TRACEPARENT"))
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            for name, value in trace_headers(begun[0]):
                response[name] = value
            return response
        finally:
            match: Any = getattr(request, "resolver_match", None)
            request_end(
                begun, route=match.route if match else None, method=request.method or "", status=status
            )
