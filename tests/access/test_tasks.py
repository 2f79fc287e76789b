"""Copying API keys' last use from Redis to PostgreSQL, off the request path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from access.models import ApiKey
from access.selectors import LAST_USED_KEY
from access.tasks import apikeys_store_last_used
from core.redis_client import get_redis
from tests.factories import make_key
from tests.servers import wait_for


@pytest.mark.django_db
def test_last_use_noted_by_a_request_is_stored_by_the_task(alice, client_with_key):
    get_redis().delete(LAST_USED_KEY)
    client = client_with_key(alice, "read")
    key = ApiKey.objects.get()
    assert key.last_used_at is None
    client.get("/api/v1/rollouts")
    # Noted by a thread of the process, not by the request itself.
    wait_for(lambda: get_redis().hexists(LAST_USED_KEY, str(key.pk)), seconds=2)
    assert apikeys_store_last_used() == 1
    key.refresh_from_db()
    assert abs((datetime.now(tz=UTC) - key.last_used_at).total_seconds()) < 60


@pytest.mark.django_db
def test_an_older_noted_use_never_replaces_a_newer_stored_one(alice):
    make_key(alice, "read")
    key = ApiKey.objects.get()
    newer = datetime(2030, 1, 1, tzinfo=UTC)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=newer)
    get_redis().hset(LAST_USED_KEY, str(key.pk), str(int(datetime(2029, 1, 1, tzinfo=UTC).timestamp())))
    assert apikeys_store_last_used() == 0
    key.refresh_from_db()
    assert key.last_used_at == newer
