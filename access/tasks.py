"""Copy when each API key was last used from Redis (written on the request path, at most once a
minute per key and process) into PostgreSQL, off the request path."""

from __future__ import annotations

from datetime import UTC, datetime

from celery import shared_task
from django.db.models import Q

from access.models import ApiKey
from access.selectors import LAST_USED_KEY
from core.redis_client import get_redis


@shared_task(name="access.store_last_used")
def apikeys_store_last_used() -> int:
    """Returns how many keys got a newer last_used_at."""
    stored = 0
    for key_id, seconds in get_redis().hgetall(LAST_USED_KEY).items():
        used_at = datetime.fromtimestamp(int(seconds), tz=UTC)
        stored += ApiKey.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=used_at), pk=int(key_id)
        ).update(last_used_at=used_at)
    return stored
