"""Helpers of the tests of limits: requests timed within one second (the limits' window) and
plain HTTP requests with the headers an attacker chooses."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from tests.servers import Reply


def at_the_start_of_a_second() -> None:
    """Wait for a new second, so that a burst of requests falls in one window of the limits."""
    time.sleep(1 - time.time() % 1 + 0.01)


def request(url: str, *, headers: dict[str, str], method: str = "GET", body: Any = None) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(sent, timeout=5) as response:
            return Reply(response.status, response.headers, json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, json.loads(error.read() or b"null"))
