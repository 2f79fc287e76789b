"""The short way to resolve: a WSGI wrapper that answers ``GET …/prompts/{name}/resolve`` with a
Bearer key before Django's request handling (URL routing, middleware, request objects), which
costs several times what resolving does (docs/benchmarks.md). Everything else, including a
resolve without a Bearer key (a session), goes on to Django, whose view gives the same answers
through the same ``resolve_answer``. The per-request rules of Django's side apply here too: the
Host must be one of ALLOWED_HOSTS (400), with PROMPTRAMP_SECURE a request over plain HTTP goes on
to Django (which redirects it), the key's ``serve`` rate limit (429, ``core.rate_limits``; a
wrong key counts against the client address's), the request's log line and trace id
(``core.request_log``), and the caller's ``attr.NAME`` attributes (``serving.attributes``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from access.throttling import requester
from core.errors import DomainError
from core.freshness import MIN_GENERATION_META, min_generation_of
from core.prompt_limits import PromptNotAllowed, prompt_require
from core.rate_limits import rate_limiter
from core.request_log import request_begin, request_end, trace_headers
from core.state_cache import min_generation, stale_read
from serving.answers import Answer, bearer_key_answer, error_answer, rate_limited_answer, resolve_answer
from serving.attributes import query_unit_and_attributes

PREFIX = "/api/v1/prompts/"
SUFFIX = "/resolve"
ROUTE = "api/v1/prompts/<str:name>/resolve"  # the request log's route: Django's pattern of the view
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
    # Read once, as Django's SecurityMiddleware reads its settings when it is made.
    secure_only = settings.PROMPTRAMP_SECURE
    hsts = ("Strict-Transport-Security", f"max-age={settings.SECURE_HSTS_SECONDS}")

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
            if name and "/" not in name and (not secure_only or _is_secure(environ)):
                begun = request_begin(environ.get("HTTP_TRACEPARENT"))
                status = 500
                try:
                    if host_allowed(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")):
                        status, headers, body = _fresh_answer(environ, name, authorization)
                    else:
                        status, headers, body = HOST_REFUSED
                finally:
                    request_end(begun, route=ROUTE, method="GET", status=status)
                headers = headers + SECURITY_HEADERS + trace_headers(begun[0])
                headers.append(("Content-Length", str(len(body))))
                if secure_only:  # as Django's SecurityMiddleware does on a secure request
                    headers.append(hsts)
                start_response(STATUS_LINES[status], headers)
                return [body]
        return app(environ, start_response)

    return application


HOST_REFUSED = error_answer(400, "bad_request", "The Host header is not allowed.")
_hosts_seen: dict[str, bool] = {}


def host_allowed(host: str) -> bool:
    """Whether a Host header names this service (settings.ALLOWED_HOSTS, as Django checks it)."""
    allowed = _hosts_seen.get(host)
    if allowed is None:
        domain, _port = split_domain_port(host)
        allowed = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
        if len(_hosts_seen) < 1000:  # the names a client sends are not ours to keep
            _hosts_seen[host] = allowed
    return allowed


def _is_secure(environ: dict[str, Any]) -> bool:
    """Over HTTPS, as Django's request.is_secure() says (SECURE_PROXY_SSL_HEADER)."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        return bool(environ.get(proxy_header[0], "").partition(",")[0].strip() == proxy_header[1])
    return bool(environ.get("wsgi.url_scheme") == "https")


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
    key = bearer_key_answer(authorization, environ, "serve")
    if isinstance(key, tuple):
        return key
    wait = rate_limiter.retry_after("serve", requester(key, {}))
    if wait is not None:
        return rate_limited_answer(wait)
    if key.prompts is not None:  # a key limited to prompts
        try:
            prompt_require(key.prompts, name)
        except PromptNotAllowed as refused:
            return error_answer(refused.status_code, refused.code, refused.message, refused.details)
    try:
        unit, attributes = query_unit_and_attributes(environ.get("QUERY_STRING", ""))
    except DomainError as error:
        return error_answer(error.status_code, error.code, error.message, error.details)
    return resolve_answer(name, unit, environ.get("HTTP_IF_NONE_MATCH", ""), attributes)
