"""Per-process caches of state that every request needs (API keys, what each prompt serves).

Each cache holds an immutable object built from PostgreSQL and a *generation* number kept in
Redis. Writers call ``state_changed(name)``; every process compares its generation with Redis at
most every ``CHECK_SECONDS`` and rebuilds when it moved, so a change reaches every web process on
every machine within about half a second. A request between checks costs one monotonic clock read.

When Redis cannot be asked, or PostgreSQL does not answer (a failed rebuild, or a failed
``SELECT 1`` probe made at most every ``PROBE_SECONDS`` while nothing changes), the last good
object keeps being served and ``stale`` says so (for Redis, after ``STALE_AFTER_SECONDS`` without
confirmation). Once both answer again the object is rebuilt, since a change may have gone
unannounced meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import DatabaseError, connection, connections, transaction
from redis.exceptions import RedisError

from config.errors import ServiceUnavailable
from config.metrics import state_reads_total, state_rebuilds_total
from config.redis_client import get_redis

T = TypeVar("T")
CHECK_SECONDS = 0.5
PROBE_SECONDS = 1.0
STALE_AFTER_SECONDS = 2.0
WARM_LOG_MARK = "state caches warmed"
CHANGES_CHANNEL = "promptramp:changes"
log = logging.getLogger(__name__)


def generation_key(name: str) -> str:
    return f"promptramp:generation:{name}"


def state_changed(name: str) -> None:
    """Tell every process that the state called ``name`` must be rebuilt.

    Bumped once now (so readers on this transaction's own connection see it at once) and once
    after the commit (so other processes rebuild from committed data). This process's own caches
    rebuild on their next read, without waiting for their next look at Redis.
    """
    _bump(name)
    _invalidate_here(name)

    def after_commit() -> None:
        _bump(name)
        _invalidate_here(name)

    transaction.on_commit(after_commit)


def _invalidate_here(name: str) -> None:
    for cache in StateCache.instances:
        if cache.name == name:
            cache.invalidate()


def _bump(name: str) -> None:
    try:
        get_redis().incr(generation_key(name))
        get_redis().publish(CHANGES_CHANNEL, name)
    except RedisError:
        log.warning("could not announce a change of %s: Redis is unavailable", name)


class StateCache(Generic[T]):
    instances: list[StateCache[object]] = []

    def __init__(self, name: str, build: Callable[[], T]) -> None:
        self.name = name
        self.build = build
        self._state: T | None = None
        self._generation: bytes | str | None = None
        self._checked_at = 0.0
        self._confirmed_at = 0.0
        self._database_ok_at = 0.0
        self._database_failed = False
        self._redis_failed = False
        self._invalidated = False
        self._lock = threading.Lock()
        # Reads are numbered in-process (next() on a count is atomic) and added to the
        # Prometheus counter at each check: a multiprocess counter update costs a lock and a
        # getpid() system call, too much for every read.
        self._reads = itertools.count(1)
        self._last_read = self._reads_reported = 0
        self._report_reads = state_reads_total.labels(name).inc
        self._count_rebuild = state_rebuilds_total.labels(name, "ok").inc
        self._count_failed_rebuild = state_rebuilds_total.labels(name, "failed").inc
        StateCache.instances.append(self)  # type: ignore[arg-type]

    def get(self) -> tuple[T, bool]:
        """The current state and whether it is stale."""
        now = time.monotonic()
        if self._state is None or now - self._checked_at >= CHECK_SECONDS:
            if self._lock.acquire(blocking=self._state is None):
                try:
                    self._refresh(now)
                finally:
                    self._lock.release()
        state = self._state
        if state is None:
            raise ServiceUnavailable(f"The {self.name} state could not be loaded.")
        self._last_read = next(self._reads)
        return state, self._database_failed or now - self._confirmed_at > STALE_AFTER_SECONDS

    def _refresh(self, now: float) -> None:
        """Ask Redis whether the state moved; rebuild when it did, when PostgreSQL or Redis
        failed since the last build (a change may have gone unannounced), or when there is no
        state yet. Otherwise check that PostgreSQL answers, at most every PROBE_SECONDS."""
        self._checked_at = now
        self.report_reads()
        try:
            generation = get_redis().get(generation_key(self.name))
        except RedisError:
            self._redis_failed = True
            if self._state is None or self._invalidated:
                self._rebuild(self._generation, now)
            return
        self._confirmed_at = now
        if (
            self._state is None
            or generation != self._generation
            or self._database_failed
            or self._redis_failed
            or self._invalidated
        ):
            if self._rebuild(generation, now):
                self._redis_failed = False
        elif now - self._database_ok_at >= PROBE_SECONDS:
            self._probe(now)

    def report_reads(self) -> None:
        """Add the reads numbered since the last report to the Prometheus counter."""
        reads = self._last_read
        if reads > self._reads_reported:
            self._report_reads(reads - self._reads_reported)
            self._reads_reported = reads

    def _rebuild(self, generation: bytes | str | None, now: float) -> bool:
        self._invalidated = False
        try:
            state = self.build()
        except DatabaseError as error:
            log.warning(
                "could not rebuild %s from PostgreSQL (%s); serving the last good state", self.name, error
            )
            _drop_broken_connection()
            self._database_failed = True
            self._count_failed_rebuild()
            return False
        self._state, self._generation = state, generation
        self._database_failed, self._database_ok_at = False, now
        self._count_rebuild()
        return True

    def _probe(self, now: float) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as error:
            log.warning("PostgreSQL does not answer (%s); serving the last good %s state", error, self.name)
            _drop_broken_connection()
            self._database_failed = True
            return
        self._database_ok_at = now

    def invalidate(self) -> None:
        """Rebuild on the next read (a change made by this process)."""
        self._invalidated = True
        self._checked_at = 0.0

    def clear(self) -> None:
        self._state, self._generation, self._checked_at = None, None, 0.0
        self._database_failed = self._redis_failed = self._invalidated = False


def warm_state_caches() -> None:
    """Load every state cache now (a web worker at start), so that a worker can serve from its
    last good state even when PostgreSQL goes down before its first request."""
    loaded = []
    for cache in StateCache.instances:
        try:
            cache.get()
            cache._checked_at = 0.0  # the first request asks Redis again: a change may follow soon
            loaded.append(cache.name)
        except ServiceUnavailable:
            log.warning("could not load the %s state at start; it will be loaded on first use", cache.name)
    connections.close_all()
    log.info("%s: state loaded at start: %s", WARM_LOG_MARK, ", ".join(loaded) or "none")


def _drop_broken_connection() -> None:
    """Close this thread's connection after a database error, so that the next rebuild connects
    afresh (a request that reached the state through serving_wsgi's short way has no Django
    request around it to do this)."""
    if not connection.in_atomic_block:
        connection.close()
