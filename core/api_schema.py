"""The error shape of core.errors, described for the OpenAPI schema: ``error_responses`` for a
view's ``extend_schema``, ``error_response`` where the answer carries headers too (written as
OpenAPI: ``access.api.schema``, the stream's ``serving.api.schema``).

The answers of access control (401, 429, 503) are not a view's to describe: the API's schema
class adds them to every operation they can come from (``access.api.schema``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_MEANINGS = {
    400: "Invalid input (validation_error, parse_error, too_large).",
    403: "The key lacks the scope, or the user does not own the prompt.",
    404: "No such object.",
    405: "The method is not allowed here.",
    409: "Conflicts with the current state.",
    413: "The request body is larger than the limit.",
    415: "The body is not JSON.",
}
# What an error answer's headers say (core.errors.exception_handler, serving.answers.error_answer).
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "How to authenticate: an API key as a Bearer token.",
        "required": True,
        "schema": {"type": "string", "example": 'Bearer realm="api"'},
    }
}


class ErrorDetailSerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField(allow_null=True)


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    error = ErrorDetailSerializer()


def error_responses(*statuses: int) -> dict[int, Any]:
    """``responses={200: X, **error_responses(400, 404)}`` in ``extend_schema``."""
    return {
        status: OpenApiResponse(response=ErrorSerializer, description=ERROR_MEANINGS[status])
        for status in statuses
    }


def error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAPI response with the error shape (the schema's ``Error``, ``ErrorSerializer``)."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = headers
    return response
