"""Where every log line goes: one line per record, JSON (``PROMPTRAMP_LOG_FORMAT=json``, the
default) or text (``make run``). A record's fields (a dict, its ``time`` a Unix time) are
formatted as it is appended, while they are fresh in the CPU's cache (about a microsecond), and a
thread of the process writes what gathered to stderr every ``FLUSH_SECONDS`` in one ``write`` — a
request never pays for a system call or a wait on the terminal or the log collector. (Formatted
by the writer instead, a busy worker's records had gone cold by the time it took the GIL from the
requests to format them: a tenth of the GIL's time under load, ``py-spy record --gil``.)

The request lines (``core.request_log``) and the Celery task lines (``core.task_log``) are written
here directly; every other record (Django's, Celery's, ours) reaches the same buffer through
``LineHandler``, the one handler of settings.LOGGING. What is still buffered is written at exit;
a process killed with SIGKILL loses at most the last ``FLUSH_SECONDS`` of lines.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import Any

import orjson

from core.trace_context import current

FLUSH_SECONDS = 0.1
FORMATS = ("json", "text")


class LineBuffer:
    """Lines appended by any thread, written in order by a writer thread of this process. A forked
    child starts with an empty buffer and starts a writer of its own at its first line."""

    def __init__(self, fd: int, line_format: str = "json", *, requests: bool = True) -> None:
        self.fd = fd
        self.line_format = line_format
        self.requests = requests  # whether requests and tasks are logged (LOG_LEVEL INFO or DEBUG)
        self._lines: deque[bytes] = deque()
        self._writing = False  # a writer thread runs (no os.getpid() per line: it is a system call)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        os.register_at_fork(after_in_child=self._forked)

    def append(self, fields: dict[str, Any]) -> None:
        self._lines.append(_render[self.line_format](fields))
        if not self._writing:
            self._start()

    def flush(self) -> None:
        """Write what is buffered now (a task's line, the exit)."""
        with self._lock:
            lines = self._lines
            chunks = [lines.popleft() for _ in range(len(lines))]
            if chunks:
                data = memoryview(b"".join(chunks))
                while data:
                    data = data[os.write(self.fd, data) :]

    def _start(self) -> None:
        with self._lock:
            if self._writing:
                return
            self._writing = True
        threading.Thread(target=self._run, name="log-lines", daemon=True).start()

    def _forked(self) -> None:
        """In a forked child: the parent's lines are the parent's to write, its writer is not here."""
        self._lines.clear()
        self._lock = threading.Lock()  # the fork may have copied it held
        self._writing = False

    def _run(self) -> None:
        while True:
            self._wake.wait(FLUSH_SECONDS)
            try:
                self.flush()
            except OSError:  # stderr closed: nothing more can be told
                return


buffer = LineBuffer(sys.stderr.fileno())
atexit.register(buffer.flush)


def json_line(fields: dict[str, Any]) -> bytes:
    fields["time"] = timestamp(fields["time"])
    return orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)


def text_line(fields: dict[str, Any]) -> bytes:
    head = f"{timestamp(fields['time'])} {fields['level'].upper()}"
    rest = " ".join(f"{name}={value}" for name, value in fields.items() if name not in ("time", "level"))
    return f"{head} {rest}\n".encode("utf-8", "replace")


_render = {"json": json_line, "text": text_line}


def timestamp(now: float) -> str:
    """``2026-12-06T11:30:00.123Z`` (truncated to the millisecond): formatted once a millisecond,
    the seconds part once a second — a busy worker logs many requests in each."""
    global _millisecond, _second
    millis = int(now * 1000)
    cached, text = _millisecond
    if cached != millis:
        second, fraction = divmod(millis, 1000)
        cached_second, prefix = _second
        if cached_second != second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            _second = (second, prefix)
        text = f"{prefix}.{fraction:03d}Z"
        _millisecond = (millis, text)
    return text


_second = (0, "1970-01-01T00:00:00")
_millisecond = (0, "1970-01-01T00:00:00.000Z")


class LineHandler(logging.Handler):
    """settings.LOGGING's handler: each record as a line of ``line_format`` (the process's format),
    with the trace id of the request or task it belongs to."""

    def __init__(self, line_format: str = "json", requests: bool = True) -> None:
        super().__init__()
        buffer.line_format, buffer.requests = line_format, requests

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {
                "time": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
            context = current.get()
            if context is not None:
                fields["request_id"] = context.request_id
                fields["trace_id"] = context.trace_id
            if record.exc_info:
                fields["error"] = logging.Formatter().formatException(record.exc_info)
            buffer.append(fields)
        except Exception:  # noqa: BLE001 (logging's own rule: a broken record must not raise)
            self.handleError(record)
