from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from access.selectors import KeyInfo, apikey_lookup


class ApiKeyUser:
    """request.user for a request made with an API key: no database row is loaded."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False

    def __init__(self, info: KeyInfo) -> None:
        self.id = self.pk = info.user_id
        self.username = info.username
        self.is_superuser = info.user_is_superuser
        self.key = info

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username


def key_of_header(header: str) -> KeyInfo | None:
    """The API key an ``Authorization`` header carries: None without a Bearer key, and
    AuthenticationFailed for a key that is malformed, unknown or revoked."""
    scheme, _, raw = header.partition(" ")
    if not header or scheme.lower() != "bearer":
        return None
    raw = raw.strip()
    if not raw or len(raw) > 200:
        raise exceptions.AuthenticationFailed("Invalid API key.")
    info = apikey_lookup(raw)
    if info is None:
        raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
    return info


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, KeyInfo] | None:
        info = key_of_header(request.META.get("HTTP_AUTHORIZATION", ""))
        return None if info is None else (ApiKeyUser(info), info)

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'
