"""A WSGI application that does no work: every request gets an answer of the size and with the
headers of a resolve of the benchmark's prompt, prepared at start. ``bench/resolve.py --servers
granian,bare`` runs it under the run command's granian settings beside the real service, so a run
shows how much of the machine the web server alone leaves to the application.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"answer":"' + b"x" * 858 + b'"}'  # 871 bytes, as resolve's answer in bench/resolve.py
# The headers of a resolve's answer (serving.fast_path), with values of the same length.
HEADERS = [
    ("ETag", '"1-c97b31e37ecb.b.1.4451.s"'),
    ("Cache-Control", "private, no-cache"),
    ("Content-Type", "application/json"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("traceparent", "00-e67a318d64b8905bec72df866b26e760-aafe560256ea6c95-01"),
    ("X-Request-Id", "aafe560256ea6c95"),
    ("Content-Length", str(len(BODY))),
]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", list(HEADERS))
    return [BODY]
