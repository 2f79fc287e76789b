"""The trace a request or task belongs to: from a W3C ``traceparent`` header when it is valid,
new when it is absent or not, and returned in the answer (``traceparent`` naming this request as
the parent, ``X-Request-Id``). The request id is this request's span id. With OpenTelemetry on
(``core.tracing``) the trace id is OpenTelemetry's.

Ids come from ``random.getrandbits`` (no system call; reseeded in a forked child by Python).
"""

from __future__ import annotations

import random
from contextvars import ContextVar
from dataclasses import dataclass

TRACEPARENT_HEADER = "traceparent"
REQUEST_ID_HEADER = "X-Request-Id"
HEX = frozenset("0123456789abcdef")
ZERO_TRACE = "0" * 32
ZERO_SPAN = "0" * 16


@dataclass(slots=True)
class TraceContext:
    trace_id: str
    request_id: str  # this request's (or task's) span id
    flags: str = "01"
    key_prefix: str | None = None  # the API key's prefix (pr_xxxxxxxx), once the key is known

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.request_id}-{self.flags}"


current: ContextVar[TraceContext | None] = ContextVar("trace_context", default=None)


def new_span_id() -> str:
    return (random.getrandbits(64) or 1).to_bytes(8).hex()


def trace_of(traceparent: str | None) -> TraceContext:
    """This request's context: in the caller's trace when ``traceparent`` is valid (W3C Trace
    Context, version 00, or a later version read as 00), else in a new trace."""
    parts = traceparent.strip().split("-") if traceparent and len(traceparent) < 256 else ()
    if len(parts) >= 4 and _valid(parts):
        return TraceContext(parts[1], new_span_id(), parts[3])
    ids = random.getrandbits(192).to_bytes(24).hex()  # one draw for both: a zero id has odds of 2**-64
    return TraceContext(ids[:32], ids[32:])


def _valid(parts: list[str]) -> bool:
    version, trace_id, parent_id, flags = parts[:4]
    return (
        len(version) == 2
        and version != "ff"
        and (version != "00" or len(parts) == 4)
        and len(trace_id) == 32
        and len(parent_id) == 16
        and len(flags) == 2
        and HEX.issuperset(version + trace_id + parent_id + flags)
        and trace_id != ZERO_TRACE
        and parent_id != ZERO_SPAN
    )


def note_key_prefix(prefix: str) -> None:
    """The request being answered came with the key of this prefix (access.selectors)."""
    context = current.get()
    if context is not None:
        context.key_prefix = prefix
