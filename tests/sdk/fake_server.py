"""A local HTTP server that speaks the promptramp contract the SDK relies on.

Written from the contract, not from the SDK: it buckets and renders with its own code. Tests
script faults (`fail_next`), read what it received (`requests`, `batches`, `events`), and swap
the snapshot it serves (`set_prompts`).
"""

import copy
import hashlib
import json
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import mmh3

API_KEY = "test-key"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
RESOLVE = re.compile(r"^/api/v1/prompts/([^/]+)/(resolve|render)$")
REQUIRED = ("event_id", "prompt", "version")


def text_version(version: int, template: str, **config: Any) -> dict[str, Any]:
    return {
        "version": version,
        "kind": "text",
        "template": template,
        "model": "gpt-4o-mini",
        "config": config,
        "variables": list(dict.fromkeys(PLACEHOLDER.findall(template))),
    }


def chat_version(version: int, messages: list[dict[str, str]]) -> dict[str, Any]:
    names = [name for message in messages for name in PLACEHOLDER.findall(message["content"])]
    return {
        "version": version,
        "kind": "chat",
        "messages": messages,
        "model": "gpt-4o",
        "config": {},
        "variables": list(dict.fromkeys(names)),
    }


def rollout(
    rollout_id: int,
    percent: float | str,
    baseline: dict[str, Any],
    candidate: dict[str, Any],
    state: str = "running",
    salt: str | None = None,
) -> dict[str, Any]:
    return {
        "id": rollout_id,
        "state": state,
        "percent": percent,
        "salt": salt,
        "baseline": baseline,
        "candidate": candidate,
    }


DEMO_PROMPTS = {
    "support.answer": {
        "production": text_version(3, "Answer {{question}} for {{ customer }}", temperature=0.2),
        "rollout": rollout(
            7,
            25,
            baseline=text_version(3, "Answer {{question}} for {{ customer }}", temperature=0.2),
            candidate=text_version(4, "Answer {{question}} kindly, {{customer}}", temperature=0.1),
        ),
    },
    "support.triage": {
        "production": chat_version(
            2,
            [
                {"role": "system", "content": "You triage tickets for {{team}}."},
                {"role": "user", "content": "{{ticket}}"},
            ],
        ),
        "rollout": None,
    },
    "summarize": {
        "production": text_version(1, "Summarize: {{text}}"),
        "rollout": rollout(
            9,
            "12.34",
            baseline=text_version(1, "Summarize: {{text}}"),
            candidate=text_version(2, "Summarize briefly: {{text}}"),
            state="paused",
        ),
    },
}


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    at: float
    status: int = 0


@dataclass
class FakeServer:
    requests: list[Received] = field(default_factory=list)
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    _faults: deque[tuple[str, int, dict[str, str]]] = field(default_factory=deque)
    _snapshot: bytes = b""
    _etag: str = ""
    _prompts: dict[str, Any] = field(default_factory=dict)
    stream_link: str = ""  # the snapshot's Link rel="stream", when set
    stale: bool = False  # snapshot answers carry X-Promptramp-Stale: 1
    # Score names the server refuses as the rule of a rollout's 20 score names does: a 400 that
    # names the indexes of the events carrying them.
    refused_scores: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 307
    # (rollout_id, arm, minute) -> exposures counted, each batch_id once, as the server does.
    exposures: dict[tuple[int, str, int], int] = field(default_factory=dict)
    batch_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.set_prompts({})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def set_prompts(self, prompts: dict[str, Any], snapshot_format: int | None = None) -> None:
        """Serve a snapshot of these prompts: {name: {"production": …, "rollout": …}}, with a
        top-level ``format`` when one is given."""
        prompts = copy.deepcopy(prompts)
        for name, item in prompts.items():
            if item.get("rollout") and item["rollout"]["salt"] is None:
                item["rollout"]["salt"] = f"{name}:{item['rollout']['id']}"
        body: dict[str, Any] = {} if snapshot_format is None else {"format": snapshot_format}
        body.update(generated_at="2026-11-23T12:00:00Z", prompts=prompts)
        with self._lock:
            self._prompts = prompts
            self._snapshot = json.dumps(body).encode()
            self._etag = '"' + hashlib.sha256(self._snapshot).hexdigest()[:16] + '"'

    def fail_next(
        self, path: str, status: int, times: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `times` requests to `path` with `status` (and these headers)."""
        with self._lock:
            self._faults.extend([(path, status, headers or {})] * times)

    def received(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == path]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def take_fault(self, path: str) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            for fault in self._faults:
                if fault[0] == path:
                    self._faults.remove(fault)
                    return fault[1], fault[2]
        return None

    def snapshot(self) -> tuple[bytes, str]:
        with self._lock:
            return self._snapshot, self._etag

    def resolve(self, name: str, unit: str) -> dict[str, Any] | None:
        item = self._prompts.get(name)
        if item is None:
            return None
        split = item.get("rollout")
        if split is None or split["state"] not in ("running", "paused"):
            body = {**item["production"], "arm": "production", "rollout_id": None, "bucket": None}
            return body | {"name": name, "sticky": bool(unit)}
        if unit:
            bucket = mmh3.hash((split["salt"] + ":" + unit).encode(), 0, False) % 10000
        else:
            bucket = random.randrange(10000)
        arm = "candidate" if bucket < round(float(split["percent"]) * 100) else "baseline"
        body = {**split[arm], "arm": arm, "rollout_id": split["id"], "bucket": bucket}
        return body | {"name": name, "sticky": bool(unit)}

    def accept(
        self, events: list[dict[str, Any]], batch_id: str | None = None, exposures: list[Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        problems = [
            {"index": index, "field": field, "reason": reason}
            for index, event in enumerate(events)
            for field, reason in _problems(event, self.refused_scores)
        ]
        if len(events) > 1000:
            problems.append({"index": 1000, "field": "", "reason": "more than 1000 events"})
        if problems:
            return 400, {"error": {"code": "invalid_events", "message": "bad events", "details": problems}}
        with self._lock:
            self.batches.append(events)
            fresh = {event["event_id"]: event for event in events if event["event_id"] not in self.events}
            calls = [event for event in fresh.values() if not event.get("of_event")]
            self.events.update((event["event_id"], event) for event in calls)
            late = [event for event in fresh.values() if event.get("of_event")]
            matched = {e["event_id"]: e for e in late if self.events.get(e["of_event"], {}).get("prompt")}
            self.events.update(matched)
            answer = {
                "accepted": len(calls) + len(matched),
                "duplicates": len(events) - len(fresh),
                "unmatched": len(late) - len(matched),
            }
            if exposures:
                new_batch = batch_id not in self.batch_ids
                self.batch_ids.add(str(batch_id))
                for row in exposures if new_batch else []:
                    key = (row["rollout_id"], row["arm"], row["minute"])
                    self.exposures[key] = self.exposures.get(key, 0) + row["count"]
                answer["exposures"] = len(exposures) if new_batch else 0
        return 202, answer


def _problems(event: dict[str, Any], refused_scores: set[str]) -> list[tuple[str, str]]:
    required = ("event_id", "of_event", "scores") if event.get("of_event") else REQUIRED
    missing = [(name, "required") for name in required if event.get(name) in (None, "", {})]
    refused = [
        (f"scores.{name}", "a rollout takes at most 20 score names")
        for name in event.get("scores") or {}
        if name in refused_scores
    ]
    return missing + refused


def render(body: dict[str, Any], values: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    missing = [name for name in body["variables"] if name not in values]
    if missing:
        message = "missing variables: " + ", ".join(missing)
        return 400, {"error": {"code": "missing_variables", "message": message, "details": missing}}

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)

    if body["kind"] == "chat":
        rendered: Any = [{**m, "content": fill(m["content"])} for m in body["messages"]]
    else:
        rendered = fill(body["template"])
    unused = sorted(set(values) - set(body["variables"]))
    return 200, body | {"rendered": rendered, "unused_variables": unused}


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length)) if length else {}
            received = Received(self.command, url.path, dict(self.headers), time.monotonic())
            server.requests.append(received)
            fault = server.take_fault(url.path)
            if fault is not None:
                received.status = fault[0]
                return self._send(fault[0], {"error": {"code": "fault", "message": "scripted"}}, fault[1])
            if url.path in server.redirects:
                received.status = 307
                return self._send(307, None, {"Location": server.redirects[url.path]})
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                received.status = 401
                return self._send(401, {"error": {"code": "unauthenticated", "message": "bad key"}})
            received.status, body, headers = self._route(url.path, parse_qs(url.query), payload)
            self._send(received.status, body, headers)

        def _route(
            self, path: str, query: dict[str, list[str]], payload: Any
        ) -> tuple[int, Any, dict[str, str]]:
            if self.command == "GET" and path == "/api/v1/snapshot":
                snapshot, etag = server.snapshot()
                headers = {"ETag": etag}
                if server.stream_link:
                    headers["Link"] = f'<{server.stream_link}>; rel="stream"'
                if server.stale:
                    headers["X-Promptramp-Stale"] = "1"
                if self.headers.get("If-None-Match") == etag:
                    return 304, None, headers
                return 200, snapshot, headers
            if self.command == "POST" and path == "/api/v1/events":
                status, body = server.accept(
                    payload["events"], payload.get("batch_id"), payload.get("exposures")
                )
                return status, body, {}
            match = RESOLVE.match(path)
            if match:
                name, action = unquote(match.group(1)), match.group(2)
                unit = query.get("unit", [""])[0] if action == "resolve" else payload.get("unit")
                body = server.resolve(name, unit or "")
                if body is None:
                    return 404, {"error": {"code": "not_found", "message": name}}, {}
                if action == "resolve":
                    return 200, body, {}
                status, body = render(body, payload.get("variables") or {})
                return status, body, {}
            return 404, {"error": {"code": "not_found", "message": path}}, {}

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = b"" if status == 304 else body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
