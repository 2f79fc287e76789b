"""Resolve's answers, free of any web framework: status, headers and body from the in-memory
serving state (``serving.state``). The WSGI fast path (``serving.fast_path``), the DRF views
(``serving.api.views``) and the stream (``serving.stream_asgi``) answer through them, so a
request gets the same answer whichever way it came.

``resolve_answer`` is the hot path: it writes bytes prepared when the state was built. Errors
have the shape of ``core.errors``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from access.selectors import KeyInfo, apikey_of_header, key_scopes
from core.errors import DomainError, RateLimited, ValidationFailed, error_body
from core.metrics import count_served, stale_serves_total
from core.state_cache import stale_read
from registry.errors import NoProductionVersion, PromptNotFound
from serving.exposures import count_exposure
from serving.state import Resolved, random_bucket, resolve, serving_cache

MAX_UNIT_LENGTH = 512
CACHE_CONTROL = "private, no-cache"
STALE_HEADER = "X-Promptramp-Stale"
JSON = "application/json"
Answer = tuple[int, list[tuple[str, str]], bytes]

count_stale = stale_serves_total.inc


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match asks (RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


def error_answer(status: int, code: str, message: str, details: Any = None) -> Answer:
    headers = [("Content-Type", JSON)]
    if status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="api"'))
    elif status == 503:
        headers.append(("Retry-After", "5"))
    return status, headers, orjson.dumps(error_body(code, message, details))


def rate_limited_answer(
    retry_after: int, message: str = "Too many requests for this key; slow down."
) -> Answer:
    status, headers, body = error_answer(429, "rate_limited", message)
    return status, [*headers, ("Retry-After", str(retry_after))], body


def bearer_key_answer(header: str, meta: Mapping[str, Any], kind: str) -> KeyInfo | Answer:
    """The key an ``Authorization`` header carries when it may read; else the error answer: 401
    for a missing, unknown or revoked key (a miss is confirmed before it is refused), 503 when
    the keys could not be confirmed, 403 without the ``read`` scope. A wrong key counts against
    the ``kind`` rate limit of the client address's wrong keys (``meta``: a WSGI environ, or its
    client address's part), 429 once they have reached it (``access.selectors.apikey_of_header``)."""
    try:
        key = apikey_of_header(header, meta, kind)
    except RateLimited as error:
        return rate_limited_answer(error.retry_after, error.message)
    except DomainError as error:  # Unauthenticated, or the keys could not be loaded at all
        return error_answer(error.status_code, error.code, error.message)
    if key is None:
        return error_answer(401, "unauthenticated", "Authentication credentials were not provided.")
    if "read" not in key_scopes(key):
        return error_answer(403, "forbidden", "This API key does not carry the scope this action needs.")
    return key


def unit_of(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_UNIT_LENGTH:
        raise ValidationFailed(
            f"'unit' must be a string of at most {MAX_UNIT_LENGTH} characters.", details={"field": "unit"}
        )
    return value


def resolved_for(
    name: str, unit: str | None, attributes: Mapping[str, str] | None = None
) -> tuple[Resolved, bool]:
    """What ``unit`` (with ``attributes``) is served of ``name``, its exposure counted. A miss (no
    such prompt, no production version) is confirmed against the change counter before it is
    answered."""
    state, stale = serving_cache.get()
    bucket = 0 if unit else random_bucket()
    now = time.time()  # when overrides expire
    try:
        resolved = resolve(state, name, unit, random_bucket=bucket, attributes=attributes, now=now)
    except (PromptNotFound, NoProductionVersion):
        state, stale = serving_cache.confirmed()
        resolved = resolve(state, name, unit, random_bucket=bucket, attributes=attributes, now=now)
    if resolved.bucket is not None:
        rollout = state.prompts[name].rollout
        if rollout is not None:
            count_exposure(rollout.id, rollout.threshold, resolved.arm, resolved.bucket, unit)
            if resolved.shadow is not None:  # a shadow step's sample: the candidate, to run unseen
                count_exposure(rollout.id, rollout.threshold, "shadow", resolved.bucket, unit)
    stale = stale or stale_read.get()  # the key the request came with, too
    if stale:
        count_stale()
    return resolved, stale


def resolve_answer(
    name: str, unit: object, if_none_match: str, attributes: Mapping[str, str] | None = None
) -> Answer:
    """Status, headers and body of a resolve by a caller who may read, with the caller's
    ``attributes`` (``serving.attributes``: checked)."""
    started = time.perf_counter()
    try:
        resolved, stale = resolved_for(name, unit_of(unit), attributes)
    except DomainError as error:
        return error_answer(error.status_code, error.code, error.message, error.details)
    etag = resolved.etag(stale=stale)
    headers = [("ETag", etag), ("Cache-Control", CACHE_CONTROL)]
    if stale:
        headers.append((STALE_HEADER, "1"))
    if etag_matches(if_none_match, etag):
        answer: Answer = 304, headers, b""
    else:
        headers.append(("Content-Type", JSON))
        answer = 200, headers, resolved.body(stale=stale)
    count_served("resolve", time.perf_counter() - started, name, resolved.arm)
    return answer
