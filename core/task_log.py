"""One log line per Celery task, in the trace of the request that enqueued it: a task sent while a
request is answered carries its ``traceparent`` in the message's headers (OpenTelemetry's own,
when it is on), and the worker runs the task in that trace (``core.trace_context``). The line
holds the time, level (``error`` when the task failed), request id (the task's span id), trace
id, task name, task id, state and duration — never the task's arguments or result.

Connected to Celery's signals by ``config.celery``; the line is written at once (a worker's
child process may end without running exit handlers).
"""

from __future__ import annotations

import time
from contextvars import Token
from typing import Any

from core import log_lines
from core.request_log import request_begin
from core.trace_context import TRACEPARENT_HEADER, TraceContext, current

_running: dict[str, tuple[TraceContext, Token[TraceContext | None], float]] = {}


def add_trace_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """before_task_publish: the task joins the trace of the request (or task) sending it."""
    context = current.get()
    if context is not None and headers is not None:
        headers.setdefault(TRACEPARENT_HEADER, context.traceparent())


def task_begin(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """task_prerun."""
    if task_id is not None:
        _running[task_id] = request_begin(getattr(task.request, TRACEPARENT_HEADER, None))


def task_end(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    """task_postrun."""
    begun = _running.pop(task_id or "", None)
    if begun is None:
        return
    context, token, started = begun
    try:
        current.reset(token)
    except ValueError:  # prerun and postrun ran in different contexts (eager calls nested)
        current.set(None)
    if not log_lines.buffer.requests:
        return
    log_lines.buffer.append(
        {
            "time": time.time(),
            "level": "info" if state in ("SUCCESS", "RETRY", None) else "error",
            "request_id": context.request_id,
            "trace_id": context.trace_id,
            "task": getattr(task, "name", None),
            "task_id": task_id,
            "state": state,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    )
    log_lines.buffer.flush()
