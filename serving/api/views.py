"""The serving API as DRF views: resolve (for sessions and the OpenAPI schema; Bearer-key
resolves are answered before Django by ``serving.fast_path``, with the same answers from
``serving.answers``), render and snapshot."""

from __future__ import annotations

import time
from typing import Any

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
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import prompt_limits_of
from core.api_schema import error_responses
from core.errors import ValidationFailed
from core.metrics import count_served, observe_seconds
from core.state_cache import stale_read
from registry.errors import RenderTooLarge
from registry.templating import MissingVariables, TooLarge, render
from serving.answers import (
    CACHE_CONTROL,
    JSON,
    MAX_UNIT_LENGTH,
    STALE_HEADER,
    count_stale,
    etag_matches,
    resolve_answer,
    resolved_for,
    unit_of,
)
from serving.attributes import attributes_of, query_unit_and_attributes
from serving.state import ServedVersion, serving_cache
from serving.stream_asgi import STREAM_PATH

MAX_VARIABLES = 200


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
    "arm": serializers.ChoiceField(choices=["baseline", "candidate", "production", "override"]),
    "rollout_id": serializers.IntegerField(
        allow_null=True, help_text="the active rollout's, also for an override (null without one)"
    ),
    "bucket": serializers.IntegerField(allow_null=True, min_value=0, max_value=9999),
    "shadow": inline_serializer(
        "Shadow",
        {key: field for key, field in VERSION_FIELDS.items() if key != "kind"},
        required=False,
        help_text="in a shadow step, for units in its sample: the candidate to run unseen and "
        "report with arm shadow (the answer itself is the baseline)",
    ),
    "override_id": serializers.IntegerField(
        required=False, help_text="arm override: the override that applied"
    ),
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
        "shadow_error": serializers.DictField(
            required=False,
            help_text="in place of shadow when the candidate could not be rendered: code, message "
            "(and the missing variables)",
        ),
    },
)


class ResolveView(APIView):
    required_scopes = {"GET": "read"}
    throttle_scope = "serve"

    @extend_schema(
        summary="The version a unit should use now",
        description="Requests with a Bearer key are answered before Django's request handling "
        "(serving.fast_path), with the same answers.",
        parameters=[
            OpenApiParameter(
                "unit", str, description="the caller's stable id (user, session, tenant); none: random bucket"
            ),
            OpenApiParameter(
                "attr.NAME",
                str,
                description="a caller attribute overrides may match (attr.tenant=acme): at most 20, "
                "names as label names, values of at most 200 characters; never stored",
            ),
        ],
        responses={
            200: RESOLVED_SCHEMA,
            304: OpenApiResponse(description="If-None-Match matched the ETag"),
            **error_responses(400, 403, 404),
        },
    )
    def get(self, request: Request, name: str) -> HttpResponse:
        unit, attributes = query_unit_and_attributes(request.META.get("QUERY_STRING", ""))
        status, headers, body = resolve_answer(
            name, unit, request.META.get("HTTP_IF_NONE_MATCH", ""), attributes
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


def _attributes_of(data: dict[str, Any]) -> dict[str, str] | None:
    attributes = data.get("attributes")
    if attributes is None:
        return None
    if not isinstance(attributes, dict):
        raise ValidationFailed(
            "'attributes' must be an object {name: value}.", details={"field": "attributes"}
        )
    return attributes_of(attributes.items())


class RenderView(APIView):
    required_scopes = {"POST": "read"}
    throttle_scope = "serve"

    @extend_schema(
        summary="Resolve a prompt for a unit and fill in its variables",
        request=inline_serializer(
            "RenderRequest",
            {
                "unit": serializers.CharField(required=False, allow_blank=True, max_length=MAX_UNIT_LENGTH),
                "attributes": serializers.DictField(
                    child=serializers.CharField(max_length=200),
                    required=False,
                    help_text="caller attributes overrides may match (at most 20); never stored",
                ),
                "variables": serializers.DictField(
                    required=False, help_text="name → string, number, boolean or null"
                ),
            },
        ),
        responses={200: RENDERED_SCHEMA, **error_responses(400, 403, 404, 413, 415)},
        examples=[
            OpenApiExample(
                "Filled in for a user",
                request_only=True,
                value={
                    "unit": "user-42",
                    "attributes": {"tenant": "acme"},
                    "variables": {"question": "Where is my order?", "customer": "ACME"},
                },
            )
        ],
    )
    def post(self, request: Request, name: str) -> Response:
        started = time.perf_counter()
        data = request.data
        if not isinstance(data, dict):
            raise ValidationFailed("The body must be a JSON object {unit, attributes, variables}.")
        unit = unit_of(data.get("unit"))
        attributes = _attributes_of(data)
        variables = _variables_of(data)
        resolved, stale = resolved_for(name, unit, attributes)
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
        if resolved.shadow is not None:
            _render_shadow(body, resolved.shadow, variables)
        response = Response(body, headers={"Cache-Control": "no-store"})
        if stale:
            response[STALE_HEADER] = "1"
        count_served("render", time.perf_counter() - started, name, resolved.arm)
        return response


def _render_shadow(body: dict[str, Any], shadow: ServedVersion, variables: dict[str, Any]) -> None:
    """The shadow of a render answer rendered too; one that cannot be (a variable it needs is
    missing, or it is too large) is left out with ``shadow_error``: the caller's own answer
    does not depend on the candidate."""
    try:
        rendered = render(template=shadow.template, messages=shadow.messages, values=variables)
    except MissingVariables as missing:
        del body["shadow"]
        body["shadow_error"] = {
            "code": "missing_variables",
            "message": f"Missing variables: {', '.join(missing.names)}.",
            "missing": missing.names,
        }
        return
    except TooLarge as too_large:
        del body["shadow"]
        body["shadow_error"] = {"code": "render_too_large", "message": str(too_large)}
        return
    body["shadow"].update(rendered=rendered.content, unused_variables=rendered.unused_variables)


def stream_url(scheme: str, host: str) -> str:
    """Where the snapshot stream is: PROMPTRAMP_STREAM_URL, else this host on STREAM_PORT."""
    if settings.PROMPTRAMP_STREAM_URL:
        return str(settings.PROMPTRAMP_STREAM_URL)
    if host.startswith("["):  # an IPv6 address
        name = host[: host.index("]") + 1]
    else:
        name = host.partition(":")[0]
    return f"{scheme}://{name}:{settings.STREAM_PORT}{STREAM_PATH}"


class SnapshotView(APIView):
    required_scopes = {"GET": "read"}
    throttle_scope = "serve"

    @extend_schema(
        summary="Every prompt's production version and running or paused rollout, for SDKs",
        responses={
            200: OpenApiTypes.OBJECT,
            304: OpenApiResponse(description="If-None-Match matched the ETag"),
            **error_responses(403),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        started = time.perf_counter()
        state, stale = serving_cache.confirmed()
        stale = stale or stale_read.get()  # the key the request came with, too
        if stale:
            count_stale()
        limits = prompt_limits_of(request)
        seen = state if limits is None else state.limited(limits)
        if etag_matches(request.META.get("HTTP_IF_NONE_MATCH", ""), seen.snapshot_etag):
            response = HttpResponse(status=304)
        else:
            response = HttpResponse(seen.snapshot, content_type=JSON)
        response["ETag"] = seen.snapshot_etag
        response["Cache-Control"] = CACHE_CONTROL
        response["Link"] = f'<{stream_url(request.scheme or "http", request.get_host())}>; rel="stream"'
        if stale:
            response[STALE_HEADER] = "1"
        observe_seconds("snapshot", time.perf_counter() - started)
        return response
