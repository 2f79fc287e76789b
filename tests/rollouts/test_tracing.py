"""OpenTelemetry: one trace from an HTTP request through the Celery task it enqueued, with the
PostgreSQL queries and Redis commands of both, exported to an in-memory exporter (the worker is a
real Celery worker running in the test's process, so it shares the exporter); the log lines carry
the same trace. Off, OpenTelemetry is not even imported."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from core.tracing import tracing_start, tracing_stop
from rollouts.webhooks import DELIVER_TASK, webhook_create
from tests.factories import actor_for
from tests.servers import base_env, database_url, wait_for

CALLER_TRACE = "5b8efff798038103d269b633813fc60c"
PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 0},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing_start(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing_stop()


@pytest.mark.django_db(transaction=True)
def test_a_request_and_the_task_it_enqueued_are_one_trace(
    alice: Any,
    prompt: Any,
    client_with_key: Any,
    webhook_receiver: Any,
    spans: InMemorySpanExporter,
    celery_worker: Any,
    captured_lines: Any,
) -> None:
    webhook_create(
        actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret=webhook_receiver.secret
    )
    unit = f"unit-{uuid.uuid4()}"

    answer = client_with_key(alice, "write").post(
        f"/api/v1/prompts/support.answer/rollouts?unit={unit}",
        {"candidate_version": 2, "plan": PLAN},
        format="json",
        HTTP_TRACEPARENT=f"00-{CALLER_TRACE}-e457b5a2e4d86bd1-01",
    )

    assert answer.status_code == 201
    webhook_receiver.wait_for(1)
    task_ran = f"run/{DELIVER_TASK}"
    wait_for(lambda: any(span.name == task_ran for span in spans.get_finished_spans()), seconds=10)
    trace = [span for span in spans.get_finished_spans() if f"{span.context.trace_id:032x}" == CALLER_TRACE]
    by_id = {span.context.span_id: span for span in trace}
    [server] = [span for span in trace if span.kind == SpanKind.SERVER]
    [run] = [span for span in trace if span.name == task_ran]
    assert server.name == "POST api/v1/prompts/<str:name>/rollouts"
    assert server.parent.span_id == 0xE457B5A2E4D86BD1
    assert any(span.name == f"apply_async/{DELIVER_TASK}" for span in trace)
    ancestor = run
    while ancestor.parent is not None and ancestor.parent.span_id in by_id:
        ancestor = by_id[ancestor.parent.span_id]
    assert ancestor is server  # the task's span descends from the request's
    systems = {span.attributes.get("db.system") or span.attributes.get("db.system.name") for span in trace}
    assert {"postgresql", "redis"} <= systems
    assert not [span.name for span in trace if unit in str(dict(span.attributes or {}))]
    [request] = [line for line in captured_lines.requests() if line["method"] == "POST"]
    [task] = [line for line in captured_lines.read() if line.get("task") == DELIVER_TASK]
    assert request["trace_id"] == task["trace_id"] == CALLER_TRACE
    assert request["request_id"] == f"{server.context.span_id:016x}"
    assert answer.headers["traceparent"] == f"00-{CALLER_TRACE}-{server.context.span_id:016x}-01"
    assert task["request_id"] == f"{run.context.span_id:016x}"


@pytest.mark.parametrize(("endpoint", "loaded"), [("", False), ("http://127.0.0.1:9", True)])
def test_opentelemetry_is_imported_only_when_an_endpoint_is_set(endpoint: str, loaded: bool) -> None:
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    probe = (
        "import sys, config.wsgi; from django.conf import settings; "
        "print(any(m.startswith('opentelemetry.instrumentation') for m in sys.modules), "
        "any('opentelemetry' in m for m in settings.MIDDLEWARE))"
    )

    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(loaded), str(loaded)]
