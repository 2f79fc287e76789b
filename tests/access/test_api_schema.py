"""The answers of access control in the OpenAPI schema (access.api.schema): every operation a
rate limit counts lists 429 ``rate_limited`` with Retry-After, naming its limit; every operation
that checks API keys lists 401 with WWW-Authenticate and 503 with Retry-After; an operation
with neither lists none of them."""

import re

import pytest
from django.urls import Resolver404, path, resolve
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import OpenApiResponse, extend_schema
from drf_spectacular.validation import validate_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from access.authentication import ApiKeyAuthentication
from access.throttling import KeyRateThrottle
from core.api_schema import ErrorSerializer
from serving.stream_asgi import STREAM_PATH

ERROR = {"$ref": "#/components/schemas/Error"}
# SPEC, "Rate limits": resolve, render, snapshot (and the stream's connects) count as `serve`,
# event batches as `events`, every other API request as `api`.
KINDS = {
    "/api/v1/prompts/{name}/resolve": "serve",
    "/api/v1/prompts/{name}/render": "serve",
    "/api/v1/snapshot": "serve",
    STREAM_PATH: "serve",
    "/api/v1/events": "events",
}


def _schema(client):
    return client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def _view_class(schema_path: str) -> type[APIView] | None:
    """The view the web server routes a schema path to; None for the stream (no route here)."""
    try:
        return resolve(re.sub(r"\{[^}]+\}", "1", schema_path)).func.cls  # type: ignore[attr-defined]
    except Resolver404:
        assert schema_path == STREAM_PATH
        return None


def _rate_limited(view: type[APIView] | None) -> bool:
    """Throttled, or counting wrong keys against the client address; the stream is, on connect."""
    return view is None or bool(view.throttle_classes) or ApiKeyAuthentication in view.authentication_classes


def _assert_header(response: dict, name: str) -> None:
    header = response["headers"][name]
    assert header["required"] is True
    assert header["schema"]["type"] == ("integer" if name == "Retry-After" else "string")


@pytest.mark.django_db
def test_every_rate_limited_operation_lists_429_with_retry_after_naming_its_limit(client):
    schema = _schema(client)
    validate_schema(schema)
    limited = []

    for schema_path, operations in schema["paths"].items():
        view = _view_class(schema_path)
        kind = KINDS.get(schema_path, "api")
        assert view is None or getattr(view, "throttle_scope", "api") == kind, schema_path
        for method, operation in operations.items():
            if not _rate_limited(view):
                assert "429" not in operation["responses"], f"{method.upper()} {schema_path}"
                continue
            limited.append(f"{method.upper()} {schema_path}")
            refused = operation["responses"]["429"]
            assert refused["content"] == {"application/json": {"schema": ERROR}}, limited[-1]
            assert refused["description"].startswith("rate_limited: ")
            assert f"`PROMPTRAMP_RATE_{kind.upper()}`" in refused["description"], limited[-1]
            _assert_header(refused, "Retry-After")

    assert "GET /api/v1/prompts/{name}/resolve" in limited and "POST /api/v1/events" in limited
    assert f"GET {STREAM_PATH}" in limited


@pytest.mark.django_db
def test_every_operation_that_checks_keys_lists_401_with_www_authenticate_and_503_with_retry_after(client):
    schema = _schema(client)

    for schema_path, operations in schema["paths"].items():
        view = _view_class(schema_path)
        if view is not None and ApiKeyAuthentication not in view.authentication_classes:
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert responses["401"]["content"] == {"application/json": {"schema": ERROR}}
            assert responses["503"]["content"] == {"application/json": {"schema": ERROR}}
            _assert_header(responses["401"], "WWW-Authenticate")
            _assert_header(responses["503"], "Retry-After")
            assert list(responses) == sorted(responses), f"{method.upper()} {schema_path}"


def test_a_status_the_view_describes_keeps_its_description_and_gains_the_header(client, db):
    events_503 = _schema(client)["paths"]["/api/v1/events"]["post"]["responses"]["503"]

    assert events_503["description"] == "Redis unavailable or backlog too long; see Retry-After"
    _assert_header(events_503, "Retry-After")


class _Open(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @extend_schema(responses={200: ErrorSerializer})
    def get(self, request):
        return Response({})


class _SessionThrottled(_Open):
    authentication_classes = [SessionAuthentication]
    throttle_classes = [KeyRateThrottle]


class _KeyedUnthrottled(_Open):
    authentication_classes = [ApiKeyAuthentication]
    throttle_scope = "serve"


@pytest.mark.parametrize(
    ("view", "listed", "counted"),
    [
        (_Open, {"200"}, None),
        (_SessionThrottled, {"200", "429"}, "requests from the key"),
        (_KeyedUnthrottled, {"200", "401", "429", "503"}, "wrong API keys from the client address"),
    ],
)
def test_an_operation_lists_only_the_access_answers_its_view_can_give(view, listed, counted):
    schema = SchemaGenerator(patterns=[path("probe", view.as_view())]).get_schema(request=None, public=True)

    validate_schema(schema)  # the Error component the answers refer to is there
    responses = schema["paths"]["/probe"]["get"]["responses"]
    assert set(responses) == listed
    if counted:
        description = responses["429"]["description"]
        assert counted in description and " or of " not in description
        kind = getattr(view, "throttle_scope", "api")
        assert f"`PROMPTRAMP_RATE_{kind.upper()}`" in description


class _KeyedDescribing401(_KeyedUnthrottled):
    @extend_schema(
        responses={200: ErrorSerializer, 401: OpenApiResponse(ErrorSerializer, "A probe's own 401.")}
    )
    def get(self, request):
        return Response({})


def test_a_401_the_view_describes_keeps_its_description_and_gains_www_authenticate():
    probe = path("probe", _KeyedDescribing401.as_view())
    responses = SchemaGenerator(patterns=[probe]).get_schema(request=None, public=True)["paths"]["/probe"][
        "get"
    ]["responses"]

    assert responses["401"]["description"] == "A probe's own 401."
    _assert_header(responses["401"], "WWW-Authenticate")
