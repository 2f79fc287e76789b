"""Scopes: read, ingest, write (implies read), checks (report a rollout's required checks),
admin (everything). A superuser's session counts as admin; any other staff session as read +
write. Ownership of a prompt is checked by the services.

A view states what it needs with ``required_scopes = {"GET": "read", "POST": "ingest", ...}``
(a tuple: any one of those scopes); without it, safe methods need ``read`` and the others
``write``. A key limited to prompts (``core.prompt_limits``) is refused (403
``prompt_not_allowed``) on a URL naming another prompt; views about a prompt their URL does not
name check it with ``prompt_check``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from access.selectors import IMPLIED, KeyInfo, key_scopes
from core.actors import Actor
from core.prompt_limits import PromptLimits, prompt_require


def granted_scopes(request: Request) -> frozenset[str]:
    if isinstance(request.auth, KeyInfo):
        return key_scopes(request.auth)
    user = request.user
    if user and user.is_authenticated and user.is_active:
        if user.is_superuser:
            return frozenset(IMPLIED["admin"])
        if user.is_staff:
            return frozenset({"read", "write"})
    return frozenset()


def prompt_limits_of(request: Request) -> PromptLimits:
    """The prompts the request may touch: a key's ``prompts``; None (every prompt) for a session."""
    return request.auth.prompts if isinstance(request.auth, KeyInfo) else None


def prompt_check(request: Request, name: str) -> None:
    """PromptNotAllowed (403) unless the request's key may touch the prompt ``name``."""
    prompt_require(prompt_limits_of(request), name)


def actor_of(request: Request) -> Actor:
    granted = granted_scopes(request)
    via = f"key:{request.auth.name}" if isinstance(request.auth, KeyInfo) else "session"
    return Actor(
        user_id=request.user.pk,
        name=request.user.get_username(),
        is_admin="admin" in granted,
        via=via,
    )


class ScopePermission(permissions.BasePermission):
    message = "This API key does not carry the scope this action needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        required = getattr(view, "required_scopes", {}).get(request.method)
        if required is None:
            required = "read" if request.method in permissions.SAFE_METHODS else "write"
        if not request.user or not request.user.is_authenticated:
            return False
        alternatives = required if isinstance(required, tuple) else (required,)
        if not set(alternatives) & granted_scopes(request):
            return False
        name = getattr(view, "kwargs", {}).get("name")
        if isinstance(name, str):
            prompt_check(request, name)
        return True
