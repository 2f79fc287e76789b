"""OpenTelemetry traces, when OTEL_EXPORTER_OTLP_ENDPOINT is set (settings.PROMPTRAMP_TRACING):
Django's requests, Celery's tasks (sent and run, in the trace of the request that sent them),
PostgreSQL queries (psycopg) and Redis commands, exported over OTLP/HTTP in batches (the
exporter reads the standard ``OTEL_*`` variables: endpoint, headers, ``OTEL_SERVICE_NAME``).
The request and task log lines then carry OpenTelemetry's trace id and span id.

Off (the variable unset), nothing here is imported: ``tracing_start`` returns before importing
OpenTelemetry, and nothing is added to a request. Spans never hold a query string: the URL
attributes of a request span are rewritten without it (a unit or attribute values travel there).
The resolve fast path and the stream make no spans of their own; their log lines carry the
caller's trace id (``core.trace_context``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import signals
from django.conf import settings

from core import request_log, task_log
from core.trace_context import TraceContext, trace_of

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

URL_ATTRIBUTES = ("http.url", "url.full")
TARGET_ATTRIBUTES = ("http.target",)
QUERY_ATTRIBUTES = ("url.query",)


def tracing_start(processor: SpanProcessor | None = None) -> bool:
    """Instrument this process when tracing is on (or a ``processor`` is given: where spans go
    instead of OTLP); whether it did. Call it after django.setup() and before the WSGI or ASGI
    handler is made (the Django instrumentation adds a middleware), and in each Celery worker
    process."""
    if processor is None and not settings.PROMPTRAMP_TRACING:
        return False
    from opentelemetry import trace  # noqa: PLC0415 (imported only when tracing is on)
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.django import DjangoInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider = TracerProvider(resource=Resource.create({"service.name": settings.PROMPTRAMP_TRACING_SERVICE}))
    provider.add_span_processor(processor)
    if settings.PROMPTRAMP_TRACING:
        trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(tracer_provider=provider, request_hook=_without_query)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    # The task's log context is taken once the instrumentation has opened the task's span.
    signals.task_prerun.disconnect(task_log.task_begin)
    signals.task_prerun.connect(task_log.task_begin, weak=False)
    PsycopgInstrumentor().instrument(tracer_provider=provider, enable_commenter=False)
    RedisInstrumentor().instrument(tracer_provider=provider)
    request_log.traced_context = _traced_context
    return True


def tracing_stop() -> None:
    """Undo tracing_start (for tests)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.django import DjangoInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: PLC0415
    from opentelemetry.instrumentation.redis import RedisInstrumentor  # noqa: PLC0415

    for instrumentor in (
        DjangoInstrumentor(),
        CeleryInstrumentor(),  # type: ignore[no-untyped-call]
        PsycopgInstrumentor(),
        RedisInstrumentor(),
    ):
        instrumentor.uninstrument()
    request_log.traced_context = None


def _traced_context(traceparent: str | None) -> TraceContext:
    """The log's context of a request or task: its OpenTelemetry span's, when one is open."""
    from opentelemetry import trace  # noqa: PLC0415

    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return trace_of(traceparent)
    return TraceContext(f"{span.trace_id:032x}", f"{span.span_id:016x}", f"{span.trace_flags:02x}")


def _without_query(span: Any, request: Any) -> None:
    """The Django instrumentation's request hook: the span's URL attributes without the query."""
    if not span.is_recording():
        return
    for name in URL_ATTRIBUTES + TARGET_ATTRIBUTES:
        span.set_attribute(name, request.path)
    for name in QUERY_ATTRIBUTES:
        span.set_attribute(name, "")
