"""Bursts of parallel requests, each on a new connection, released together: what a threaded
web process sees right after a write, and where a per-process cache can lie."""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.client import HTTPMessage
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: HTTPMessage  # names are case-insensitive: granian sends them in lower case
    body: Any


def request(
    base: str,
    method: str,
    path: str,
    *,
    key: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request on a new connection."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    sent = dict(headers or {})
    if key:
        sent["Authorization"] = f"Bearer {key}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        return Reply(response.status, response.headers, json.loads(raw) if raw else None)
    finally:
        connection.close()


def burst(
    bases: list[str], path: str, *, key: str, threads: int = 16, headers: dict[str, str] | None = None
) -> list[Reply]:
    """``threads`` parallel GETs of ``path`` to each base URL, released at once."""
    targets = [base for base in bases for _ in range(threads)]
    barrier = threading.Barrier(len(targets))
    replies: list[Reply | BaseException] = [RuntimeError("no reply")] * len(targets)

    def send(index: int, base: str) -> None:
        barrier.wait()
        try:
            replies[index] = request(base, "GET", path, key=key, headers=headers)
        except BaseException as error:  # reported by the assertion below, with the others
            replies[index] = error

    workers = [threading.Thread(target=send, args=(i, base)) for i, base in enumerate(targets)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    failed = [r for r in replies if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} requests failed: {failed[:3]}"
    return [r for r in replies if isinstance(r, Reply)]
