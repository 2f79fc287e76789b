"""What the benchmarks share about the service they measure."""

from __future__ import annotations

import time
import urllib.request


def wait_until_answering(url: str, key: str, *, seconds: float = 120) -> bytes:
    """GET ``url`` with ``key`` until it answers 2xx (the service is starting); its body."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
