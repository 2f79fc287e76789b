"""The API's rate limits (``core.rate_limits``) as a DRF throttle: per key, or per client address
for a request without one (a session, the schema). A view names its kind with
``throttle_scope`` (``serve``, ``events``); every other view counts as ``api``. Refused: 429
``rate_limited`` with ``Retry-After`` (``core.errors``). A wrong key never reaches the throttle
(DRF authenticates first): authentication counts it against the client address, apart from the
address's requests without a key (``access.selectors.apikey_of_header``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from access.selectors import KeyInfo
from core.rate_limits import by_address, rate_limiter


def requester(auth: Any, meta: Mapping[str, Any]) -> str:
    """Whose requests are counted together: the key's, else the client address's (``meta``: a
    Django request's META or a WSGI environ)."""
    if isinstance(auth, KeyInfo):
        return auth.rate_counter
    return by_address(meta)


def rate_kind(view: Any) -> str:
    """The kind of rate limit a DRF view's requests count against."""
    return getattr(view, "throttle_scope", "api")


class KeyRateThrottle(BaseThrottle):  # type: ignore[misc]  # DRF is untyped here
    def allow_request(self, request: Request, view: Any) -> bool:
        who = requester(request.auth, request.META)
        self._wait = rate_limiter.retry_after(rate_kind(view), who)
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait
