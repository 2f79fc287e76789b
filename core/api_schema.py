"""The error shape of core.errors, described for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_MEANINGS = {
    400: "Invalid input (validation_error, parse_error, too_large).",
    401: "Missing, invalid or revoked API key.",
    403: "The key lacks the scope, or the user does not own the prompt.",
    404: "No such object.",
    405: "The method is not allowed here.",
    409: "Conflicts with the current state.",
    413: "The request body is larger than the limit.",
    415: "The body is not JSON.",
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
