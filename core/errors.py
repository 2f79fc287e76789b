"""Domain errors and the one place that turns any error into promptramp's JSON error shape:
``{"error": {"code": "...", "message": "...", "details": ...}}``.

Services raise DomainError subclasses; views never build error responses by hand. A subclass
says its code (and, for a new kind of error, its HTTP status) in its class line:

    class PromptNotFound(NotFound, code="prompt_not_found"): ...
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response


class DomainError(Exception):
    status_code = 400
    code = "invalid"
    retry_after: int | None = None  # seconds, sent as Retry-After

    def __init_subclass__(cls, *, code: str = "", status: int = 0, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = code or cls.code
        cls.status_code = status or cls.status_code

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code:
            self.code = code


class ValidationFailed(DomainError, code="validation_error"): ...


# No valid credentials (the API's views answer it as DRF's AuthenticationFailed).
class Unauthenticated(DomainError, status=401, code="unauthenticated"): ...


class Forbidden(DomainError, status=403, code="forbidden"): ...


class NotFound(DomainError, status=404, code="not_found"): ...


class Conflict(DomainError, status=409, code="conflict"): ...


class PayloadTooLarge(DomainError, status=413, code="too_large"): ...


class RateLimited(DomainError, status=429, code="rate_limited"):
    retry_after: int

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(DomainError, status=503, code="unavailable"):
    retry_after = 5


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_DRF_CODES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "parse_error",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return Response(
            error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=headers
        )
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("forbidden", "Permission denied."), status=403)
    if isinstance(exc, (DatabaseError, RedisError)):
        return Response(
            error_body("unavailable", f"A dependency is unavailable: {type(exc).__name__}."),
            status=503,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, exceptions.APIException):
        code = next((c for t, c in _DRF_CODES.items() if isinstance(exc, t)), "error")
        if isinstance(exc, exceptions.ValidationError):
            message, details = "The request is not valid.", exc.detail
        else:
            message, details = str(exc.detail), None
        headers = {}
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait or 1))
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
            status_code = status.HTTP_401_UNAUTHORIZED
        else:
            status_code = exc.status_code
        return Response(error_body(code, message, details), status=status_code, headers=headers)
    return None


def json_400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's refusals before any view, such as a Host not in ALLOWED_HOSTS."""
    return JsonResponse(error_body("bad_request", "Bad request (a Host that is not allowed?)."), status=400)


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
