"""Runtime serving: resolve, render and snapshot, answered from the in-memory serving state.

``resolve`` is the hot path: ``resolve_answer`` writes bytes prepared when the state was built.
Requests with a Bearer key reach it from ``registry.api.serving_wsgi`` before Django's request
handling, which costs ten times what resolving does (see docs/benchmarks.md); the others
(sessions, and the OpenAPI schema) through the DRF view ``ResolveView``, with the same answers.
``render`` and ``snapshot`` are DRF views. Errors have the shape of ``config.errors``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.authentication import key_of_header
from access.permissions import key_scopes
from access.selectors import KeyInfo
from config.api_schema import error_responses
from config.errors import DomainError, ValidationFailed, error_body
from config.metrics import count_resolve, request_seconds, stale_serves_total
from registry.errors import NoProductionVersion, PromptNotFound, RenderTooLarge
from registry.serving import Resolved, random_bucket, resolve, serving_cache
from registry.templating import MissingVariables, TooLarge, render

MAX_UNIT_LENGTH = 512
MAX_VARIABLES = 200
CACHE_CONTROL = "private, no-cache"
STALE_HEADER = "X-Promptramp-Stale"
JSON = "application/json"
Answer = tuple[int, list[tuple[str, str]], bytes]

_observe_resolve = request_seconds.labels("resolve").observe
_observe_render = request_seconds.labels("render").observe
_observe_snapshot = request_seconds.labels("snapshot").observe
_count_stale = stale_serves_total.inc


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


def bearer_key_answer(header: str) -> KeyInfo | Answer:
    """The key an ``Authorization`` header carries when it may read; else the error answer: 401
    for a missing, unknown or revoked key (a miss is confirmed before it is refused), 503 when
    the keys could not be confirmed, 403 without the ``read`` scope."""
    try:
        key = key_of_header(header)
    except exceptions.AuthenticationFailed as failure:
        return error_answer(401, "unauthenticated", str(failure.detail))
    except DomainError as error:  # the keys could not be loaded at all
        return error_answer(error.status_code, error.code, error.message)
    if key is None:
        return error_answer(401, "unauthenticated", "Authentication credentials were not provided.")
    if "read" not in key_scopes(key):
        return error_answer(403, "forbidden", "This API key does not carry the scope this action needs.")
    return key


def _unit_of(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_UNIT_LENGTH:
        raise ValidationFailed(
            f"'unit' must be a string of at most {MAX_UNIT_LENGTH} characters.", details={"field": "unit"}
        )
    return value


def _served(name: str, unit: str | None) -> tuple[Resolved, bool]:
    """What ``unit`` is served of ``name``. A miss (no such prompt, no production version) is
    confirmed against the change counter before it is answered."""
    state, stale = serving_cache.get()
    bucket = 0 if unit else random_bucket()
    try:
        resolved = resolve(state, name, unit, random_bucket=bucket)
    except (PromptNotFound, NoProductionVersion):
        state, stale = serving_cache.confirmed()
        resolved = resolve(state, name, unit, random_bucket=bucket)
    count_resolve(name, resolved.arm)
    if stale:
        _count_stale()
    return resolved, stale


def resolve_answer(name: str, unit: object, if_none_match: str) -> Answer:
    """Status, headers and body of a resolve by a caller who may read."""
    started = time.perf_counter()
    try:
        resolved, stale = _served(name, _unit_of(unit))
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
    _observe_resolve(time.perf_counter() - started)
    return answer


VERSION_FIELDS = {
    "version": serializers.IntegerField(),
    "kind": serializers.CharField(help_text="text or chat"),
    "template": serializers.CharField(required=False, help_text="text prompts"),
    "messages": serializers.ListField(
        child=serializers.DictField(), required=False, help_text="chat prompts: [{role, content}]"
    ),
    "model": serializers.CharField(),
    "config": serializers.DictField(),
    "variables": serializers.ListField(child=serializers.CharField()),
}
RESOLVED_FIELDS = {
    "name": serializers.CharField(),
    **VERSION_FIELDS,
    "arm": serializers.ChoiceField(choices=["baseline", "candidate", "production"]),
    "rollout_id": serializers.IntegerField(allow_null=True),
    "bucket": serializers.IntegerField(allow_null=True, min_value=0, max_value=9999),
    "sticky": serializers.BooleanField(help_text="false when no unit was given (a random bucket)"),
    "stale": serializers.BooleanField(
        required=False, help_text="present (true) when the state could not be confirmed lately"
    ),
}
RESOLVED_SCHEMA = inline_serializer("Resolved", RESOLVED_FIELDS)
RENDERED_SCHEMA = inline_serializer(
    "Rendered",
    {
        **RESOLVED_FIELDS,
        "rendered": serializers.JSONField(help_text="the text, or the messages, with values filled in"),
        "unused_variables": serializers.ListField(child=serializers.CharField()),
    },
)


class ResolveView(APIView):
    required_scopes = {"GET": "read"}

    @extend_schema(
        summary="The version a unit should use now",
        description="Requests with a Bearer key are answered before Django's request handling "
        "(registry.api.serving_wsgi), with the same answers.",
        parameters=[
            OpenApiParameter(
                "unit", str, description="the caller's stable id (user, session, tenant); none: random bucket"
            )
        ],
        responses={
            200: RESOLVED_SCHEMA,
            304: OpenApiResponse(description="If-None-Match matched the ETag"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, name: str) -> HttpResponse:
        status, headers, body = resolve_answer(
            name, request.query_params.get("unit"), request.META.get("HTTP_IF_NONE_MATCH", "")
        )
        response = HttpResponse(body, status=status)
        for header, value in headers:
            response[header] = value
        return response


def _variables_of(data: dict[str, Any]) -> dict[str, Any]:
    variables = data.get("variables", {})
    if variables is None:
        variables = {}
    if not isinstance(variables, dict) or len(variables) > MAX_VARIABLES:
        raise ValidationFailed(f"'variables' must be an object of at most {MAX_VARIABLES} entries.")
    bad = sorted(
        name
        for name, value in variables.items()
        if value is not None and not isinstance(value, (str, int, float, bool))
    )
    if bad:
        raise ValidationFailed(
            "Variable values must be strings, numbers, booleans or null.", details={"variables": bad}
        )
    return variables


class RenderView(APIView):
    required_scopes = {"POST": "read"}

    @extend_schema(
        summary="Resolve a prompt for a unit and fill in its variables",
        request=inline_serializer(
            "RenderRequest",
            {
                "unit": serializers.CharField(required=False, allow_blank=True, max_length=MAX_UNIT_LENGTH),
                "variables": serializers.DictField(
                    required=False, help_text="name → string, number, boolean or null"
                ),
            },
        ),
        responses={200: RENDERED_SCHEMA, **error_responses(400, 401, 403, 404, 413, 415)},
        examples=[
            OpenApiExample(
                "Filled in for a user",
                request_only=True,
                value={
                    "unit": "user-42",
                    "variables": {"question": "Where is my order?", "customer": "ACME"},
                },
            )
        ],
    )
    def post(self, request: Request, name: str) -> Response:
        started = time.perf_counter()
        data = request.data
        if not isinstance(data, dict):
            raise ValidationFailed("The body must be a JSON object {unit, variables}.")
        unit = _unit_of(data.get("unit"))
        variables = _variables_of(data)
        resolved, stale = _served(name, unit)
        served = resolved.served
        try:
            rendered = render(template=served.template, messages=served.messages, values=variables)
        except MissingVariables as missing:
            raise ValidationFailed(
                f"Missing variables: {', '.join(missing.names)}.",
                details={"missing": missing.names},
                code="missing_variables",
            ) from missing
        except TooLarge as too_large:
            raise RenderTooLarge(str(too_large)) from None
        body = resolved.as_dict(stale=stale)
        body.update(rendered=rendered.content, unused_variables=rendered.unused_variables)
        response = Response(body, headers={"Cache-Control": "no-store"})
        if stale:
            response[STALE_HEADER] = "1"
        _observe_render(time.perf_counter() - started)
        return response


def stream_url(scheme: str, host: str) -> str:
    """Where the snapshot stream is: PROMPTRAMP_STREAM_URL, else this host on STREAM_PORT."""
    if settings.PROMPTRAMP_STREAM_URL:
        return str(settings.PROMPTRAMP_STREAM_URL)
    if host.startswith("["):  # an IPv6 address
        name = host[: host.index("]") + 1]
    else:
        name = host.partition(":")[0]
    return f"{scheme}://{name}:{settings.STREAM_PORT}/api/v1/snapshot/stream"


class SnapshotView(APIView):
    required_scopes = {"GET": "read"}

    @extend_schema(
        summary="Every prompt's production version and running or paused rollout, for SDKs",
        responses={
            200: OpenApiTypes.OBJECT,
            304: OpenApiResponse(description="If-None-Match matched the ETag"),
            **error_responses(401, 403),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        started = time.perf_counter()
        state, stale = serving_cache.confirmed()
        if stale:
            _count_stale()
        if etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), state.snapshot_etag):
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(state.snapshot, content_type=JSON)
        response["ETag"] = state.snapshot_etag
        response["Cache-Control"] = CACHE_CONTROL
        response["Link"] = f'<{stream_url(request.scheme or "http", request.get_host())}>; rel="stream"'
        if stale:
            response[STALE_HEADER] = "1"
        _observe_snapshot(time.perf_counter() - started)
        return response
