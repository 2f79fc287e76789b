"""Reading API keys on the request path: from a per-process cache, never a query per request."""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from redis.exceptions import RedisError

from access.models import ApiKey
from access.services import hash_key
from core.errors import RateLimited, Unauthenticated
from core.prompt_limits import PromptLimits
from core.rate_limits import by_key, rate_limiter, wrong_keys_from
from core.redis_client import get_redis
from core.state_cache import API_KEYS_STATE, StateCache
from core.trace_context import note_key_prefix

# What each scope grants beyond itself (access.permissions explains the scopes).
IMPLIED = {"admin": {"read", "ingest", "write", "checks", "admin"}, "write": {"read", "write"}}
LAST_USED_KEY = "promptramp:api_keys:last_used"
LAST_USED_EVERY_SECONDS = 60.0
WRONG_KEYS = "Too many requests with a wrong API key from this address; slow down."
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyInfo:
    key_id: int
    name: str
    user_id: int
    username: str
    scopes: frozenset[str]
    user_is_superuser: bool
    prefix: str  # pr_xxxxxxxx, what logs may name
    prompts: PromptLimits = None  # None: every prompt (core.prompt_limits)
    granted: frozenset[str] = frozenset()  # every scope the key grants, the implied ones included

    @functools.cached_property
    def rate_counter(self) -> str:
        """Who its requests are counted as (``core.rate_limits``): made once, not per request."""
        return by_key(self.key_id)


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
            prefix=key.prefix,
            prompts=tuple(key.prompts) if key.prompts else None,
            granted=scopes_granted(key.scopes),
        )
        for key in keys
    }


api_keys_cache: StateCache[dict[str, KeyInfo]] = StateCache(API_KEYS_STATE, _build_keys)
_last_noted: dict[int, float] = {}
# The digest of each key found valid, by key: SHA-256 once per key and process rather than on every
# request (a few percent of a resolve's CPU). Whether the key is still valid is always asked of the
# keys' state. Keys that were never valid are not kept (made-up keys cannot fill it).
_known_digests: dict[str, str] = {}
MAX_KNOWN_DIGESTS = 10_000


def apikey_list() -> QuerySet[ApiKey]:
    """Every key, revoked ones too, newest first (for admins; never the key itself)."""
    return ApiKey.objects.select_related("user").order_by("-created_at", "-id")


def scopes_granted(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope that ``scopes`` grant, the implied ones included."""
    granted: set[str] = set()
    for scope in scopes:
        granted |= IMPLIED.get(scope, {scope})
    return frozenset(granted)


def key_scopes(info: KeyInfo) -> frozenset[str]:
    """Every scope the key grants, the implied ones included (worked out when the keys are read)."""
    return info.granted


def apikey_of_header(header: str, meta: Mapping[str, Any], kind: str) -> KeyInfo | None:
    """The API key an ``Authorization`` header carries: None without a Bearer key, and
    Unauthenticated for a key that is malformed, unknown or revoked. Such a wrong key counts
    against the ``kind`` rate limit of the client's address, on the address's counter of wrong
    keys (``core.rate_limits.wrong_keys_from``; ``meta``: a Django request's META or a WSGI
    environ); once it has reached the limit, RateLimited (``apikey_lookup``)."""
    scheme, _, raw = header.partition(" ")
    if not header or scheme.lower() != "bearer":
        return None
    raw = raw.strip()
    if not raw or len(raw) > 200:
        _count_wrong_key(kind, wrong_keys_from(meta))
        raise Unauthenticated("Invalid API key.")
    info = apikey_lookup(raw, meta, kind)
    if info is None:
        raise Unauthenticated("Invalid or revoked API key.")
    return info


def apikey_lookup(raw_key: str, meta: Mapping[str, Any], kind: str) -> KeyInfo | None:
    """The key's owner and scopes, or None for a key that is unknown or revoked (counted against
    the ``kind`` rate limit of the client address's wrong keys: ``apikey_of_header``). A miss is
    confirmed against the change counter first (a key created a moment ago in another process is
    found); when that cannot be done, ServiceUnavailable (503), never a false "unknown key". From
    an address whose wrong keys have reached the limit, a miss is not confirmed but refused at
    once, RateLimited: a flood of made-up keys costs no Redis round trip."""
    digest = _known_digests.get(raw_key)
    known = digest is not None
    if digest is None:
        digest = hash_key(raw_key)
    keys, _stale = api_keys_cache.get()
    info = keys.get(digest)
    if info is None:
        who = wrong_keys_from(meta)
        wait = rate_limiter.reached(kind, who)
        if wait is not None:
            raise RateLimited(WRONG_KEYS, retry_after=wait)
        keys, _stale = api_keys_cache.confirmed()
        info = keys.get(digest)
        if info is None:
            _count_wrong_key(kind, who)
            return None
    if not known and len(_known_digests) < MAX_KNOWN_DIGESTS:
        _known_digests[raw_key] = digest
    _note_used(info.key_id)
    note_key_prefix(info.prefix)
    return info


def _count_wrong_key(kind: str, who: str) -> None:
    """One more wrong key from ``who`` (``wrong_keys_from``); RateLimited when over the limit."""
    wait = rate_limiter.retry_after(kind, who)
    if wait is not None:
        raise RateLimited(WRONG_KEYS, retry_after=wait)


def _note_used(key_id: int) -> None:
    """Remember when a key was used, at most once a minute per key and process, off the
    request's path: a thread of this process writes it to Redis, and a beat task copies these
    times to PostgreSQL (access.tasks.apikeys_store_last_used)."""
    now = time.monotonic()
    if now - _last_noted.get(key_id, -LAST_USED_EVERY_SECONDS) < LAST_USED_EVERY_SECONDS:
        return
    _last_noted[key_id] = now
    _used_keys.put((key_id, int(time.time())))
    global _writer_pid
    if _writer_pid != os.getpid():  # none yet in this process (a forked worker has no threads)
        _writer_pid = os.getpid()
        threading.Thread(target=_write_last_used, name="apikeys-last-used", daemon=True).start()


_used_keys: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
_writer_pid = 0


def _write_last_used() -> None:
    while True:
        key_id, seconds = _used_keys.get()
        try:
            get_redis().hset(LAST_USED_KEY, str(key_id), str(seconds))
        except RedisError:
            log.warning("could not note the use of API key %s", key_id)
