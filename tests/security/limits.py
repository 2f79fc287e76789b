"""Helpers of the tests of limits: requests timed within one second (the limits' window) and
plain HTTP requests with the headers an attacker chooses."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from tests.servers import Reply


def at_the_start_of_a_second() -> None:
    """Wait for a new second, so that a burst of requests falls in one window of the limits."""
    time.sleep(1 - time.time() % 1 + 0.01)


T = TypeVar("T")


def in_one_second(burst: Callable[[], T]) -> T:
    """``burst()`` run from the start of a second; run again in a later second when it spilled
    over into the next one (a loaded machine), since the limits count per second."""
    for _ in range(5):
        at_the_start_of_a_second()
        started = int(time.time())
        result = burst()
        if int(time.time()) == started:
            return result
    raise AssertionError("five bursts in a row did not fit in one second")


def request(url: str, *, headers: dict[str, str], method: str = "GET", body: Any = None) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(sent, timeout=5) as response:
            return Reply(response.status, response.headers, json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, json.loads(error.read() or b"null"))
