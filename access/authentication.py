from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from access.selectors import KeyInfo, apikey_of_header
from access.throttling import rate_kind
from core.errors import RateLimited, Unauthenticated


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


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, KeyInfo] | None:
        kind = rate_kind(request.parser_context.get("view"))  # a wrong key counts against it
        try:
            info = apikey_of_header(request.META.get("HTTP_AUTHORIZATION", ""), request.META, kind)
        except Unauthenticated as refused:
            raise exceptions.AuthenticationFailed(refused.message) from None
        except RateLimited as refused:
            raise exceptions.Throttled(refused.retry_after, refused.message) from None
        return None if info is None else (ApiKeyUser(info), info)

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'
