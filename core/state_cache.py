"""Per-process caches of state that every request needs (API keys, what each prompt serves).

Each cache holds an immutable object built from PostgreSQL and the *generation* it was built at:
a counter per state kept in Redis, bumped after every committed change (``state_changed``), next
to one global counter that numbers every change of any state.

The freshness contract (README, "Freshness"):

- **No answer from an unconfirmed state.** A read answers from the object only when a check of
  the counter *started* within the last ``CHECK_SECONDS``. Otherwise the reading thread waits for
  a check (one thread checks, the others wait for it: none answers from the old object while
  another refreshes it) and, when the counter moved, for the rebuild.
- **Misses are confirmed.** ``confirmed()`` checks the counter at that moment (a check that
  started after the call); callers use it before answering "unknown key", "no such prompt", or a
  snapshot. With Redis unavailable it rebuilds from PostgreSQL; when neither answers it raises
  ``ServiceUnavailable`` (503), never a miss for something that may exist.
- **Read-your-writes.** Every change returns the new global generation (a write's answer carries
  it as ``X-Promptramp-Generation``); a read with a minimum generation (the request header
  ``X-Promptramp-Min-Generation``, see ``min_generation``) is answered only from a check that saw
  at least that generation.
- **No waiting on a sick dependency.** The counter is read with a deadline a little under
  ``WAIT_SECONDS`` (50 ms, see ``core.redis_client``), and rebuilds run on a builder thread
  of their own: a reader waits for a rebuild at most ``WAIT_SECONDS`` longer than rebuilds
  usually take (twice the moving average of their durations), then answers from the last good
  object marked stale while the rebuild goes on. A miss, and a request that names a minimum
  generation (it asked to pay for freshness), wait up to ``CONFIRM_WAIT_SECONDS`` for a
  rebuild: the other answer would be a 503.
  A failed or slow counter read counts as a completed check (the answer is marked stale, Redis is
  asked again after ``CHECK_SECONDS``). While Redis cannot be asked, the object is rebuilt from
  PostgreSQL at least every ``REDIS_DOWN_REBUILD_SECONDS``; PostgreSQL is probed off the request
  path at most every ``PROBE_SECONDS``. A process with no object at all waits up to
  ``FIRST_BUILD_SECONDS`` for its first build.
- **Work proportional to the change.** ``state_changed`` may name the keys that changed (the
  serving state: prompt names); each announcement is logged in Redis with its generation, and a
  cache given an ``update`` function applies only the keys logged between its generation and the
  new one. A gap in the log, a change of everything, or a failure since the last build means a
  whole rebuild.

A read between checks costs one monotonic clock read and a few attribute reads.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.db import DatabaseError, connection, connections, transaction
from redis.exceptions import RedisError

from core.errors import ServiceUnavailable
from core.metrics import state_reads_total, state_rebuilds_total
from core.redis_client import SERVING_WAIT_SECONDS, get_checking_redis, get_redis

T = TypeVar("T")
CHECK_SECONDS = 0.5
PROBE_SECONDS = 1.0
REDIS_DOWN_REBUILD_SECONDS = 5.0
FIRST_BUILD_SECONDS = 5.0
CONFIRM_WAIT_SECONDS = 1.0
WAIT_SECONDS = SERVING_WAIT_SECONDS
GLOBAL_GENERATION_KEY = "promptramp:generation"
CHANGE_LOG_LENGTH = 1000
EVERYTHING = "*"
CHANGES_CHANNEL = "promptramp:changes"
WARM_LOG_MARK = "state caches warmed"
log = logging.getLogger(__name__)

# The states every process caches. Each is changed by the apps that own its tables, which call
# ``state_changed`` with its name; the process that reads it builds it (``StateCache``).
API_KEYS_STATE = "api_keys"  # API keys and their users: access
SERVING_STATE = "serving"  # what each prompt serves: registry and rollouts write, serving reads

# The minimum global generation the current request asks for (X-Promptramp-Min-Generation), and
# the generation the current request's own writes reached (for X-Promptramp-Generation).
min_generation: contextvars.ContextVar[int] = contextvars.ContextVar("min_generation", default=0)
stale_read: contextvars.ContextVar[bool] = contextvars.ContextVar("stale_read", default=False)
"""Whether a state the current request read was stale — its key as much as what it serves: the
answer is then marked stale. Set by every read; each request starts it at False (the freshness
middleware, the resolve fast path)."""
written_generation: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "written_generation", default=None
)


def generation_key(name: str) -> str:
    return f"promptramp:generation:{name}"


def state_changed(name: str, keys: Iterable[str] | None = None) -> None:
    """Tell every process that the state called ``name`` changed, once the current transaction
    commits (at once outside one): for the serving state, ``keys`` names the prompts that
    changed, so each process updates only those (None: anything may have changed). This
    process's caches of it rebuild on their next read; the new global generation is kept for
    the current request's answer."""
    changed = None if keys is None else frozenset(keys)
    what = EVERYTHING if changed is None else "\n".join(sorted(changed))
    _invalidate_here(name, changed)

    def after_commit() -> None:
        generation = _announce(name, what)
        _invalidate_here(name, changed)
        if generation is not None:
            written_generation.set(max(generation, written_generation.get() or 0))

    transaction.on_commit(after_commit)


def current_generation() -> int | None:
    """The global generation now, or None when Redis does not answer in time."""
    try:
        value = get_checking_redis().get(GLOBAL_GENERATION_KEY)
    except RedisError:
        return None
    return int(value or 0)


def _invalidate_here(name: str, changed: frozenset[str] | None) -> None:
    for cache in StateCache.instances:
        if cache.name == name:
            cache.invalidate(changed)


def changes_key(name: str) -> str:
    return f"promptramp:changes:{name}"


# One step: the state's counter, the global generation, the state's change log (the keys each
# generation changed, the last CHANGE_LOG_LENGTH of them) and the notice to stream processes.
_ANNOUNCE = """
local generation = redis.call('INCR', KEYS[1])
local global = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[3], generation, generation .. ' ' .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[2]) - 1)
redis.call('PUBLISH', ARGV[4], ARGV[3] .. ' ' .. global)
return global
"""


def _announce(name: str, what: str) -> int | None:
    client = get_redis()
    keys = [generation_key(name), GLOBAL_GENERATION_KEY, changes_key(name)]
    try:
        generation = client.eval(_ANNOUNCE, 3, *keys, what, CHANGE_LOG_LENGTH, name, CHANGES_CHANNEL)
    except RedisError:
        log.error("could not announce a change of %s: Redis is unavailable", name)
        return None
    return int(generation)


def _changed_since(name: str, old: bytes | None, new: bytes | None) -> frozenset[str] | None:
    """The keys changed by the generations after ``old`` up to ``new``, from the change log;
    None when the log cannot tell (a gap, a change of everything, Redis failing)."""
    if old is None or new is None:
        return None
    first, last = int(old) + 1, int(new)
    if last < first or last - first >= CHANGE_LOG_LENGTH:
        return None
    try:
        entries = get_checking_redis().zrangebyscore(changes_key(name), first, last)
    except RedisError:
        return None
    changed: set[str] = set()
    generations = set()
    for entry in entries:
        text = entry.decode() if isinstance(entry, bytes) else str(entry)
        generation, _, what = text.partition(" ")
        if what == EVERYTHING:
            return None
        generations.add(int(generation))
        changed.update(key for key in what.split("\n") if key)
    if generations != set(range(first, last + 1)):
        return None
    return frozenset(changed)


_redis_failed_at = float("-inf")


def _read_counters(name: str, now: float) -> tuple[bytes | None, bytes | None]:
    """The state's counter and the global one, in one round trip. After a failed read, every
    cache of the process counts Redis as failed for CHECK_SECONDS without asking it again: one
    request never pays the deadline twice."""
    global _redis_failed_at
    if now - _redis_failed_at < CHECK_SECONDS:
        raise RedisError("Redis failed moments ago")
    try:
        generation, seen = get_checking_redis().mget(generation_key(name), GLOBAL_GENERATION_KEY)
    except RedisError:
        _redis_failed_at = time.monotonic()
        raise
    if isinstance(generation, str):
        generation = generation.encode()
    if isinstance(seen, str):
        seen = seen.encode()
    return generation, seen


@dataclass(frozen=True, slots=True)
class _Held(Generic[T]):
    state: T
    generation: bytes | None  # the state's counter when its build began; None: read without Redis


class StateCache(Generic[T]):
    instances: list[StateCache[object]] = []

    def __init__(
        self, name: str, build: Callable[[], T], update: Callable[[T, frozenset[str]], T] | None = None
    ) -> None:
        """``build`` makes the object from PostgreSQL; ``update``, when given, makes a new object
        from an old one and the keys that changed (named by ``state_changed``)."""
        self.name = name
        self.build = build
        self.update = update
        self._held: _Held[T] | None = None
        self._checked_at = float("-inf")  # when the last completed check started (monotonic)
        self._seen = 0  # the global generation that check read
        self._redis_failed = False
        self._database_failed = False
        self._behind = False  # the counter moved and the rebuild has not finished yet
        self._confirmed_ok = False  # the last check found the object current
        self._last_build_ok = False
        self._epoch = 0  # bumped by clear(): a build that began before is not installed
        self._invalidated = False
        self._invalidated_keys: frozenset[str] | None = frozenset()  # None: everything
        self._database_ok_at = float("-inf")
        self._built_at = float("-inf")  # when the last successful build started
        self._usual_build_seconds = 0.0  # moving average of successful builds' durations
        self._check_lock = threading.Lock()
        self._builder = _Builder(self)  # type: ignore[arg-type]
        # Reads are numbered in-process (next() on a count is atomic) and added to the
        # Prometheus counter at each check: a multiprocess counter update costs a lock and a
        # getpid() system call, too much for every read.
        self._reads = itertools.count(1)
        self._last_read = self._reads_reported = 0
        self._report_reads = state_reads_total.labels(name).inc
        self._count_rebuild = state_rebuilds_total.labels(name, "ok").inc
        self._count_update = state_rebuilds_total.labels(name, "updated").inc
        self._count_failed_rebuild = state_rebuilds_total.labels(name, "failed").inc
        StateCache.instances.append(self)  # type: ignore[arg-type]

    # --- reading ----------------------------------------------------------------------------

    def get(self) -> tuple[T, bool]:
        """The state, confirmed within the last CHECK_SECONDS (and at least as new as the
        request's minimum generation), and whether it is stale."""
        now = time.monotonic()
        held = self._held
        if (
            held is not None
            and now - self._checked_at < CHECK_SECONDS
            and self._seen >= min_generation.get()
            and not self._invalidated
            and not self._behind  # a rebuild is under way: wait for it with the thread that asked
        ):
            self._last_read = next(self._reads)
            return held.state, self._read_stale()
        return self._check(since=now - CHECK_SECONDS, must_confirm=False)

    def confirmed(self) -> tuple[T, bool]:
        """The state after a check that started now: for misses and snapshots. Raises
        ServiceUnavailable when neither Redis nor PostgreSQL could confirm it."""
        return self._check(since=time.monotonic(), must_confirm=True)

    def _check(self, *, since: float, must_confirm: bool) -> tuple[T, bool]:
        with self._check_lock:
            held = self._held
            # Another thread's check that started after ``since`` answers for this read too.
            if not (
                held is not None
                and self._checked_at >= since
                and self._seen >= min_generation.get()
                and not self._invalidated
                and not (must_confirm and self._redis_failed)
            ):
                self._check_now(must_confirm)
            held = self._held
            if held is None:
                raise ServiceUnavailable(f"The {self.name} state could not be loaded.")
            if must_confirm and not self._confirmed_ok:
                raise ServiceUnavailable(f"The {self.name} state could not be confirmed just now.")
            self._last_read = next(self._reads)
            return held.state, self._read_stale()

    def _read_stale(self) -> bool:
        stale = self._redis_failed or self._database_failed or self._behind
        if stale:
            stale_read.set(True)
        return stale

    def _check_now(self, must_confirm: bool) -> None:
        """Read the counter and rebuild when it moved. Sets ``_confirmed_ok``: whether the object
        is now known to be current (by Redis, or by a rebuild from PostgreSQL just now)."""
        started = time.monotonic()
        if must_confirm and self._redis_failed and started - self._checked_at < CHECK_SECONDS:
            # Redis was found unavailable just now: ask PostgreSQL.
            self._confirmed_ok = self._rebuild(None, confirming=True)
            return
        self.report_reads()
        try:
            generation, seen = _read_counters(self.name, started)
        except RedisError:
            self._redis_failed, self._checked_at, self._confirmed_ok = True, started, False
            if self._held is None or must_confirm:
                self._confirmed_ok = self._rebuild(None, confirming=must_confirm)
            elif self._invalidated or started - self._built_at >= REDIS_DOWN_REBUILD_SECONDS:
                self._invalidated, self._invalidated_keys = False, frozenset()
                self._builder.request(generation=None, changed=None)  # the answer is marked stale anyway
            return
        held = self._held
        current = held is not None and generation == held.generation and not self._invalidated
        failed = self._database_failed or self._redis_failed
        if not current or failed:
            self._redis_failed = False
            changed = None
            # After a failure, everything: a change may have gone unannounced meanwhile.
            if self.update is not None and held is not None and not failed:
                changed = (
                    frozenset()
                    if generation == held.generation
                    else _changed_since(self.name, held.generation, generation)
                )
                if changed is not None and self._invalidated:
                    invalidated = self._invalidated_keys
                    changed = None if invalidated is None else changed | invalidated
            self._confirmed_ok = self._rebuild(generation, changed, confirming=must_confirm) or current
        else:
            self._confirmed_ok = True
            if started - self._database_ok_at >= PROBE_SECONDS:
                self._builder.request(probe=True)
        self._checked_at, self._seen = started, int(seen or 0)

    def _rebuild(
        self, generation: bytes | None, changed: frozenset[str] | None = None, *, confirming: bool = False
    ) -> bool:
        """Rebuild at ``generation`` (only the ``changed`` keys, when known) and wait for it as
        long as the module's docstring says. Inside a transaction (a test, or a service reading
        its own writes) the build runs on this thread's connection instead. True when it
        succeeded in time."""
        self._invalidated, self._invalidated_keys = False, frozenset()
        if connection.in_atomic_block:
            return self._build_and_install(generation, changed)
        ticket = self._builder.request(generation=generation, changed=changed)
        if self._held is None:
            wait = FIRST_BUILD_SECONDS
        elif confirming or min_generation.get():
            wait = CONFIRM_WAIT_SECONDS
        else:
            wait = WAIT_SECONDS + 2 * self._usual_build_seconds
        done = self._builder.wait(ticket, wait)
        return done and self._last_build_ok

    def _build_and_install(self, generation: bytes | None, changed: frozenset[str] | None) -> bool:
        started, epoch, held = time.monotonic(), self._epoch, self._held
        try:
            update = self.update
            if changed is not None and held is not None and update is not None:
                state, count = update(held.state, changed), self._count_update
            else:
                state, count = self.build(), self._count_rebuild
        except DatabaseError as error:
            log.warning(
                "could not rebuild %s from PostgreSQL (%s); serving the last good state", self.name, error
            )
            _drop_broken_connection()
            self._database_failed = True
            self._last_build_ok = False
            self._count_failed_rebuild()
            return False
        if epoch != self._epoch:  # cleared meanwhile: this build may predate what cleared it
            return False
        self._held = _Held(state, generation)
        took = time.monotonic() - started
        self._usual_build_seconds = min(0.9 * self._usual_build_seconds + 0.1 * took, WAIT_SECONDS * 10)
        self._database_failed, self._database_ok_at, self._built_at = False, started, started
        self._last_build_ok = True
        count()
        return True

    def _probe(self) -> None:
        started = time.monotonic()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as error:
            log.warning("PostgreSQL does not answer (%s); serving the last good %s state", error, self.name)
            _drop_broken_connection()
            self._database_failed = True
            return
        self._database_ok_at = started

    def report_reads(self) -> None:
        """Add the reads numbered since the last report to the Prometheus counter."""
        reads = self._last_read
        if reads > self._reads_reported:
            self._report_reads(reads - self._reads_reported)
            self._reads_reported = reads

    def invalidate(self, changed: frozenset[str] | None = None) -> None:
        """Rebuild (the ``changed`` keys, None: everything) on the next read: a change made by
        this process, which it must see before the change is announced."""
        if self._invalidated_keys is not None:
            self._invalidated_keys = None if changed is None else self._invalidated_keys | changed
        self._invalidated = True

    def clear(self) -> None:
        """Forget the object (tests; a build in progress is not installed)."""
        self._epoch += 1
        self._held = None
        self._checked_at, self._seen = float("-inf"), 0
        self._database_failed = self._redis_failed = self._invalidated = self._behind = False
        self._invalidated_keys = frozenset()
        self._confirmed_ok = self._last_build_ok = False

    def stop_builder(self) -> None:
        """End the builder thread, which closes its database connection (tests: the test database
        cannot be dropped while it is open). The next rebuild starts another."""
        self._builder.stop()


class _Builder:
    """The thread that rebuilds one cache (and probes PostgreSQL for it), so that a reader never
    waits on PostgreSQL longer than it chooses to. Requests are numbered; a build serves every
    request made before it began, with the union of what they said changed."""

    def __init__(self, cache: StateCache[object]) -> None:
        self._cache = cache
        self._condition = threading.Condition()
        self._requested = self._done = 0
        self._generation: bytes | None = None
        self._changed: frozenset[str] | None = frozenset()
        self._probe = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def request(
        self, *, generation: bytes | None = None, changed: frozenset[str] | None = None, probe: bool = False
    ) -> int:
        with self._condition:
            if probe:
                self._probe = True
            else:
                if self._changed is not None:  # None: everything is to be rebuilt already
                    self._changed = None if changed is None else self._changed | changed
                self._requested += 1
                self._generation = generation
                self._cache._behind = True
            self._ensure_thread()
            self._condition.notify_all()
            return self._requested

    def wait(self, ticket: int, seconds: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: self._done >= ticket, timeout=seconds)

    def stop(self) -> None:
        with self._condition:
            thread, self._thread = self._thread, None  # a thread runs while it is the builder's own
            self._condition.notify_all()
        if thread is not None:
            thread.join()

    def _ensure_thread(self) -> None:
        # A forked child (a server's worker) has no copy of its parent's threads.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name=f"state-{self._cache.name}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        cache, this = self._cache, threading.current_thread()
        while True:
            with self._condition:
                self._condition.wait_for(
                    lambda: self._requested > self._done or self._probe or self._thread is not this
                )
                if self._thread is not this:
                    break
                ticket, generation, changed = self._requested, self._generation, self._changed
                probe, self._probe, self._changed = self._probe, False, frozenset()
            if ticket > self._done:
                cache._build_and_install(generation, changed)
                with self._condition:
                    self._done = ticket
                    if self._requested == ticket:
                        cache._behind = False
                    self._condition.notify_all()
            elif probe:
                cache._probe()
        connections.close_all()


def warm_state_caches() -> None:
    """Load every state cache now (a web worker at start), so that a worker can serve from its
    last good state even when PostgreSQL goes down before its first request."""
    loaded = []
    for cache in StateCache.instances:
        try:
            cache.get()
            cache._checked_at = float("-inf")  # the first request asks Redis again
            loaded.append(cache.name)
        except ServiceUnavailable:
            log.warning("could not load the %s state at start; it will be loaded on first use", cache.name)
    connections.close_all()
    log.info("%s: state loaded at start: %s", WARM_LOG_MARK, ", ".join(loaded) or "none")


def _drop_broken_connection() -> None:
    """Close this thread's connection after a database error, so that the next rebuild connects
    afresh."""
    if not connection.in_atomic_block:
        connection.close()
