"""The short way to resolve: a WSGI wrapper that answers ``GET …/prompts/{name}/resolve`` with a
Bearer key before Django's request handling (URL routing, middleware, request objects), which
costs several times what resolving does (docs/benchmarks.md). Everything else, including a
resolve without a Bearer key (a session), goes on to Django, whose view gives the same answers
through the same ``resolve_answer``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from core.errors import DomainError
from core.freshness import MIN_GENERATION_META, min_generation_of
from core.prompt_limits import PromptNotAllowed, prompt_require
from core.state_cache import min_generation, stale_read
from serving.answers import Answer, bearer_key_answer, error_answer, resolve_answer

PREFIX = "/api/v1/prompts/"
SUFFIX = "/resolve"
# What Django's SecurityMiddleware and XFrameOptionsMiddleware add to every answer.
SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def resolve_fast_path(app: WSGIApp) -> WSGIApp:
    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        authorization: str = environ.get("HTTP_AUTHORIZATION", "")
        if (
            authorization[:7].lower() == "bearer "
            and environ["REQUEST_METHOD"] == "GET"
            and path.startswith(PREFIX)
            and path.endswith(SUFFIX)
        ):
            name = path[len(PREFIX) : -len(SUFFIX)]
            if name and "/" not in name:
                status, headers, body = _fresh_answer(environ, name, authorization)
                headers = headers + SECURITY_HEADERS + [("Content-Length", str(len(body)))]
                start_response(STATUS_LINES[status], headers)
                return [body]
        return app(environ, start_response)

    return application


def _fresh_answer(environ: dict[str, Any], name: str, authorization: str) -> Answer:
    """The answer from state caches at least as new as X-Promptramp-Min-Generation asks."""
    stale_read.set(False)  # this thread's previous request may have read a stale state
    wanted = environ.get(MIN_GENERATION_META)
    if not wanted:
        return _answer(environ, name, authorization)
    try:
        token = min_generation.set(min_generation_of(wanted))
    except DomainError as error:
        return error_answer(error.status_code, error.code, error.message, error.details)
    try:
        return _answer(environ, name, authorization)
    finally:
        min_generation.reset(token)


def _answer(environ: dict[str, Any], name: str, authorization: str) -> Answer:
    key = bearer_key_answer(authorization)
    if isinstance(key, tuple):
        return key
    if key.prompts is not None:  # a key limited to prompts
        try:
            prompt_require(key.prompts, name)
        except PromptNotAllowed as refused:
            return error_answer(refused.status_code, refused.code, refused.message, refused.details)
    unit = None
    for field, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
        if field == "unit":
            unit = value
    return resolve_answer(name, unit, environ.get("HTTP_IF_NONE_MATCH", ""))
