"""The stream process for tests: uvicorn started as the run command starts it, beside a web
server, on free ports of 127.0.0.1; and a small reader of its Server-Sent Events written from
the protocol (not the SDK's)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection

from devstack.stack import stream_command
from tests.servers import base_env, database_url, free_port, serving_process, web_server

STREAM_PATH = "/api/v1/snapshot/stream"


@dataclass
class Service:
    web: str  # base URL of the web server (gunicorn)
    stream: str  # base URL of the stream process (uvicorn)
    stream_port: int


@dataclass
class Event:
    event: str  # "" for a comment
    id: str | None
    data: Any
    at: float  # time.monotonic() when it was read


@contextmanager
def stream_server(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    with serving_process(stream_command("127.0.0.1", str(port)), env, log, port) as url:
        yield url


@contextmanager
def service(folder: Path, **env: str) -> Iterator[Service]:
    """A web server and a stream process on the test database, the web naming the stream."""
    port = free_port()
    environment = base_env(DATABASE_URL=database_url(connection.settings_dict), STREAM_PORT=str(port), **env)
    with (
        web_server(environment, folder / "web.log") as web,
        stream_server(environment, port, folder / "stream.log") as stream,
    ):
        yield Service(web, stream, port)


class SSEReader:
    """GET the stream with a key; ``next()`` reads the next event or comment."""

    def __init__(
        self,
        base_url: str,
        key: str,
        last_event_id: str | None = None,
        timeout: float = 5,
        traceparent: str | None = None,
    ) -> None:
        host = base_url.removeprefix("http://")
        self.connection = http.client.HTTPConnection(host, timeout=timeout)
        headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        if traceparent is not None:
            headers["traceparent"] = traceparent
        self.connection.request("GET", STREAM_PATH, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = self.response.headers

    def next(self, *, comments: bool = False) -> Event | None:
        """The next event (comments too when asked); None when the server ended the stream."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text.startswith(":"):
                if comments:
                    return Event("", None, text[1:].strip(), time.monotonic())
                continue
            if text:
                name, _, value = text.partition(": ")
                fields[name] = value
            elif fields:
                return Event(fields["event"], fields.get("id"), json.loads(fields["data"]), time.monotonic())

    def next_event(self, name: str) -> Event:
        event = self.next()
        assert event is not None, "the stream ended"
        assert event.event == name, event
        return event

    def close(self) -> None:
        self.connection.close()
