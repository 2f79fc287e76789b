"""Reading API keys on the request path: from a per-process cache, never a query per request."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.db.models import QuerySet
from redis.exceptions import RedisError

from access.models import ApiKey
from access.services import API_KEYS_STATE, hash_key
from config.redis_client import get_redis
from config.state_cache import StateCache

LAST_USED_KEY = "promptramp:api_keys:last_used"
LAST_USED_EVERY_SECONDS = 60.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyInfo:
    key_id: int
    name: str
    user_id: int
    username: str
    scopes: frozenset[str]
    user_is_superuser: bool


def _build_keys() -> dict[str, KeyInfo]:
    keys = ApiKey.objects.filter(revoked_at__isnull=True, user__is_active=True).select_related("user")
    return {
        key.key_hash: KeyInfo(
            key_id=key.pk,
            name=key.name,
            user_id=key.user_id,
            username=key.user.get_username(),
            scopes=frozenset(key.scopes),
            user_is_superuser=key.user.is_superuser,
        )
        for key in keys
    }


api_keys_cache: StateCache[dict[str, KeyInfo]] = StateCache(API_KEYS_STATE, _build_keys)
_last_noted: dict[int, float] = {}


def apikey_list() -> QuerySet[ApiKey]:
    """Every key, revoked ones too, newest first (for admins; never the key itself)."""
    return ApiKey.objects.select_related("user").order_by("-created_at", "-id")


def apikey_lookup(raw_key: str) -> KeyInfo | None:
    keys, _stale = api_keys_cache.get()
    info = keys.get(hash_key(raw_key))
    if info is not None:
        _note_used(info.key_id)
    return info


def _note_used(key_id: int) -> None:
    """Remember in Redis when a key was used, at most once a minute per key and process; a beat
    task copies these times to PostgreSQL (access.tasks.apikeys_store_last_used)."""
    now = time.monotonic()
    if now - _last_noted.get(key_id, -LAST_USED_EVERY_SECONDS) < LAST_USED_EVERY_SECONDS:
        return
    _last_noted[key_id] = now
    try:
        get_redis().hset(LAST_USED_KEY, str(key_id), str(int(time.time())))
    except RedisError:
        log.warning("could not note the use of API key %s", key_id)
