"""A Prometheus server for tests: ``GET|POST /api/v1/query``, answering only the queries a test
registered, in the real response format.

Instant queries take ``query``, ``time`` (unix seconds or RFC 3339) and ``timeout``, from the
URL (GET) or a form body (POST), and answer
``{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {...},
"value": [<time>, "<value>"]}]}}``; errors answer ``{"status": "error", "errorType", "error"}``
with 400 (bad_data), as Prometheus does. The fake does not evaluate PromQL: a query text it was
not given answers bad_data and is kept in ``unexpected`` — so a test states the exact query text
the source must send.
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_server import FakeHandler, running

Labels = dict[str, str]


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (Go's shortest 'f' format, +Inf, NaN)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    if "e" in text:
        text = f"{value:.20f}".rstrip("0").rstrip(".")
    return text.removesuffix(".0")


@dataclass
class FakePrometheus:
    answers: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    delay_seconds: float = 0.0
    fail_status: int | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def register(self, query: str, series: list[tuple[Labels, float]] | float) -> None:
        """The answer to exactly ``query``: series (labels, value), or one unlabelled value."""
        self.answers[query] = series if isinstance(series, list) else [({}, series)]

    @property
    def queries(self) -> list[str]:
        return [request["query"] for request in self.requests]


class PrometheusHandler(FakeHandler):
    def do_GET(self) -> None:
        self._query(parse_qs(urlsplit(self.path).query, keep_blank_values=True), "GET")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
            self._error(400, "bad_data", "expected a form-encoded body")
            return
        self._query(parse_qs(body, keep_blank_values=True), "POST")

    def _query(self, params: dict[str, list[str]], method: str) -> None:
        state: FakePrometheus = self.server.state
        if urlsplit(self.path).path != "/api/v1/query":
            self.send_json(404, {"status": "error", "errorType": "not_found", "error": "not found"})
            return
        request = {name: values[-1] for name, values in params.items()}
        request["method"] = method
        state.requests.append(request)
        self.pause(state.delay_seconds)
        if state.fail_status:
            self._error(state.fail_status, "internal", "fake Prometheus failure")
            return
        query = request.get("query")
        if not query:
            self._error(400, "bad_data", 'invalid parameter "query": empty query')
            return
        at = _parse_time(request.get("time"))
        if at is None:
            self._error(400, "bad_data", 'invalid parameter "time": cannot parse')
            return
        if query not in state.answers:
            state.unexpected.append(query)
            self._error(400, "bad_data", f"fake Prometheus has no answer for {query!r}")
            return
        result = [
            {"metric": labels, "value": [at, format_value(value)]} for labels, value in state.answers[query]
        ]
        self.send_json(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    def _error(self, status: int, kind: str, message: str) -> None:
        self.send_json(status, {"status": "error", "errorType": kind, "error": message})


def _parse_time(text: str | None) -> float | None:
    """Unix seconds or RFC 3339; the current time when absent (as Prometheus)."""
    if text is None:
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def serve(state: FakePrometheus) -> AbstractContextManager[str]:
    """Run a fake Prometheus holding ``state``; the context's value is its base URL."""
    return running(PrometheusHandler, state)
