"""Two ways into resolve: Django's test client (the Django view, which also serves sessions) and
the WSGI short way that gunicorn uses for Bearer keys (serving.fast_path)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from django.test import Client

from serving.fast_path import resolve_fast_path


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes
    _json: Any = field(default=None, repr=False)

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.headers

    def json(self) -> Any:
        return json.loads(self.content)


def _not_for_django(environ: dict[str, Any], start_response: Any) -> Any:
    raise AssertionError(f"the short way handed {environ['PATH_INFO']} on to Django")


fast_app = resolve_fast_path(_not_for_django)


def fast_get(path: str, *, key: str, headers: dict[str, str] | None = None) -> Answer:
    path_info, _, query = path.partition("?")
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "HTTP_AUTHORIZATION": f"Bearer {key}",
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = {name.lower(): value for name, value in response_headers}

    body = b"".join(fast_app(environ, start_response))
    assert int(captured["headers"]["content-length"]) == len(body)
    return Answer(captured["status"], captured["headers"], body)


def django_get(path: str, *, key: str, headers: dict[str, str] | None = None) -> Answer:
    extra = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in (headers or {}).items()}
    response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {key}", **extra)
    return Answer(response.status_code, {k.lower(): v for k, v in response.items()}, response.content)
