"""How access control looks in the OpenAPI schema: the API key as an HTTP bearer scheme
(``ApiKeyAuthenticationScheme``), and the answers it gives before any view runs, described on
every operation they can come from by ``AccessAutoSchema``, the API's schema class
(``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``), rather than by each view:

- 401 ``unauthenticated`` with ``WWW-Authenticate``, for a missing or wrong key;
- 429 ``rate_limited`` with ``Retry-After``, over the view's rate limit (``access.throttling``:
  per key, per client address without one) or, for wrong keys, over the client address's;
- 503 ``unavailable`` with ``Retry-After``, when an unknown key could not be confirmed (or
  PostgreSQL or Redis fails).

Statuses a view describes keep its description; they gain the headers.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

from access.authentication import ApiKeyAuthentication
from access.throttling import rate_kind
from core.api_schema import RETRY_AFTER, WWW_AUTHENTICATE, ErrorSerializer, error_response

UNAUTHENTICATED = "Missing, invalid or revoked API key."
UNAVAILABLE = (
    "unavailable: a dependency fails (PostgreSQL, Redis), so an unknown key, or the state the "
    "answer comes from, could not be confirmed."
)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "access.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Authorization: Bearer pr_…` (manage.py create_api_key or "
            "POST /api/v1/keys).",
        }


def unauthenticated_response() -> dict[str, Any]:
    """401 ``unauthenticated``, telling how to authenticate (``WWW-Authenticate``)."""
    return error_response(UNAUTHENTICATED, WWW_AUTHENTICATE)


def rate_limited_response(kind: str, *, per_key: bool = True, wrong_keys: bool = True) -> dict[str, Any]:
    """429 over the ``kind`` rate limit, counting the key's requests (``per_key``: the view is
    throttled) and the wrong keys of a client address (``wrong_keys``: it authenticates API keys)."""
    counted = [
        *(["requests from the key (without one, from the client address)"] if per_key else []),
        *(["wrong API keys from the client address"] if wrong_keys else []),
    ]
    return error_response(
        f"rate_limited: over the `{kind}` rate limit (`PROMPTRAMP_RATE_{kind.upper()}` a second) "
        f"of {', or of '.join(counted)}.",
        RETRY_AFTER,
    )


class AccessAutoSchema(AutoSchema):
    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is not None:
            operation["responses"] = self._with_access_answers(operation["responses"])
        return operation

    def _with_access_answers(self, responses: dict[str, Any]) -> dict[str, Any]:
        keyed = any(isinstance(each, ApiKeyAuthentication) for each in self.view.get_authenticators())
        throttled = bool(self.view.get_throttles())
        self.resolve_serializer(ErrorSerializer, "response")  # the Error component the answers refer to
        answers = {}
        if keyed:
            answers["401"] = unauthenticated_response()
            answers["503"] = error_response(UNAVAILABLE, RETRY_AFTER)
        if keyed or throttled:
            answers["429"] = rate_limited_response(rate_kind(self.view), per_key=throttled, wrong_keys=keyed)
        for status, answer in answers.items():
            described = responses.get(status)
            if described is not None:  # the view's description, with the answer's headers
                answer = {**described, "headers": {**described.get("headers", {}), **answer["headers"]}}
            responses[status] = answer
        return dict(sorted(responses.items()))
