"""Reads of overrides: a prompt's, newest first, with what the API and the admin show of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from registry.selectors import prompt_get
from serving.errors import OverrideNotFound
from serving.models import Override

MAX_OVERRIDES = 1000  # applying (not expired) per prompt


def override_list(*, prompt_name: str) -> QuerySet[Override]:
    """The prompt's overrides, expired ones included (until the next create removes them)."""
    prompt = prompt_get(prompt_name)
    return Override.objects.filter(prompt=prompt).select_related("prompt", "version").order_by("-id")


def override_get(*, prompt_name: str, override_id: int) -> Override:
    override = override_list(prompt_name=prompt_name).filter(pk=override_id).first()
    if override is None:
        raise OverrideNotFound(f"Prompt '{prompt_name}' has no override {override_id}.")
    return override


def applying(now: datetime) -> Q:
    """Overrides not expired at ``now``."""
    return Q(expires_at__isnull=True) | Q(expires_at__gt=now)


def override_json(override: Override, *, now: datetime) -> dict[str, Any]:
    return {
        "id": override.pk,
        "prompt": override.prompt.name,
        "match": override.match,
        "version": override.version.version if override.version else None,
        "arm": override.arm or None,
        "reason": override.reason,
        "expires_at": override.expires_at.isoformat() if override.expires_at else None,
        "active": override.expires_at is None or override.expires_at > now,
        "created_by": override.created_by_name,
        "created_at": override.created_at.isoformat(),
    }
