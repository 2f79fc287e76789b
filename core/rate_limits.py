"""Rate limits across all processes without a Redis call per request.

Each process counts the requests it admits per (kind, who) in the current second and decides
alone: a request is refused when the count of every process known at the last exchange plus
what this process admitted since reaches the limit (``settings.PROMPTRAMP_RATE_LIMITS[kind]``,
requests per second; 0: off). A thread exchanges the counts with Redis every
``EXCHANGE_SECONDS`` (one pipelined INCRBY per counter that moved), so the processes together
may overshoot a limit by what the others admit in that time. With Redis unavailable each process
keeps counting on its own.

Login failures (``login_failures_*``) are counted in Redis directly: a login is rare.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from core.client_address import client_address_of
from core.redis_client import get_redis, get_request_redis

EXCHANGE_SECONDS = 0.1
WINDOW_SECONDS = 1
LOGIN_WINDOW_SECONDS = 15 * 60
Counter = tuple[str, str]  # (kind, who): who is "key:<id>", "address:<ip>" or "wrong-key:<ip>"

logger = logging.getLogger(__name__)


def by_key(key_id: int) -> str:
    """Who a request with a valid API key is counted as: its key."""
    return f"key:{key_id}"


def by_address(meta: Mapping[str, Any]) -> str:
    """Who a request is counted as when no valid key speaks for it: its client address
    (``meta``: a Django request's META or a WSGI environ)."""
    return f"address:{client_address_of(meta)}"


def wrong_keys_from(meta: Mapping[str, Any]) -> str:
    """Who a wrong API key is counted as: its client address, on a counter apart from that
    address's requests without a key (a signed-in user's session), so that wrong keys sent from
    behind the same NAT cannot lock its users out, nor a user's busy session make their first
    mistyped key a 429 rather than a 401."""
    return f"wrong-key:{client_address_of(meta)}"


class RateLimiter:
    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the exchanging thread stays in the parent

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._exchanging = threading.Lock()  # one exchange at a time: each sends what it counted
        self._window = 0
        self._limits: dict[str, int] = {}
        self._known: dict[Counter, int] = {}  # every process's count at the last exchange
        self._admitted: dict[Counter, int] = {}  # this process's admissions since
        self._thread: threading.Thread | None = None

    def retry_after(self, kind: str, who: str) -> int | None:
        """None when the request is admitted (and counted); else the seconds to wait."""
        window = int(time.time())
        if window != self._window:
            self._new_window(window)
        limit = self._limits[kind]
        if not limit:
            return None
        counter = (kind, who)
        with self._lock:
            admitted = self._admitted.get(counter, 0)
            if self._known.get(counter, 0) + admitted >= limit:
                return WINDOW_SECONDS
            self._admitted[counter] = admitted + 1
        if self._thread is None:
            self._start()
        return None

    def reached(self, kind: str, who: str) -> int | None:
        """As ``retry_after``, without counting the request: None while below the limit."""
        window = int(time.time())
        if window != self._window:
            self._new_window(window)
        limit = self._limits[kind]
        counter = (kind, who)
        with self._lock:
            if limit and self._known.get(counter, 0) + self._admitted.get(counter, 0) >= limit:
                return WINDOW_SECONDS
        return None

    def _new_window(self, window: int) -> None:
        with self._lock:
            if window > self._window:
                self._window, self._known, self._admitted = window, {}, {}
                self._limits = dict(settings.PROMPTRAMP_RATE_LIMITS)  # a change counts from the next second

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._exchange_forever, name="rate-limits")
                self._thread.daemon = True
                self._thread.start()

    def _exchange_forever(self) -> None:
        while True:
            time.sleep(EXCHANGE_SECONDS)
            self.exchange()

    def exchange(self) -> None:
        """Add this process's admissions to the shared counters and learn their totals. They stay
        counted here until the totals that hold them are known: a request decided meanwhile
        sees them."""
        with self._exchanging:
            self._exchange()

    def _exchange(self) -> None:
        with self._lock:
            window, admitted = self._window, dict(self._admitted)
        if not admitted:
            return
        pipeline = get_redis().pipeline(transaction=False)
        for (kind, who), count in admitted.items():
            name = f"promptramp:rate:{kind}:{who}:{window}"
            pipeline.incrby(name, count)
            pipeline.expire(name, 2 * WINDOW_SECONDS)
        try:
            totals = pipeline.execute()[::2]
        except RedisError as error:
            logger.warning("rate limits: counting in this process only (%s)", type(error).__name__)
            return  # they stay in this process's count, and are sent again with the next exchange
        with self._lock:
            if window != self._window:
                return  # a new second: the counts of the old one no longer matter
            for counter, total in zip(admitted, totals, strict=True):
                self._known[counter] = int(total)
                since = self._admitted[counter] - admitted[counter]
                if since:
                    self._admitted[counter] = since
                else:
                    del self._admitted[counter]


rate_limiter = RateLimiter()


def _login_counter(username: str, address: str) -> str:
    who = hashlib.sha256(f"{username.casefold()}\n{address}".encode()).hexdigest()
    return f"promptramp:login-failures:{who}"


def login_failures_retry_after(username: str, address: str) -> int | None:
    """None while this user name may still be tried from this address; else the seconds until
    its failures are forgotten. With Redis unavailable, logins are not throttled."""
    limit: int = settings.PROMPTRAMP_LOGIN_FAILURES
    if not limit:
        return None
    counter = _login_counter(username, address)
    pipeline = get_request_redis().pipeline(transaction=False)
    pipeline.get(counter)
    pipeline.ttl(counter)
    try:
        failures, ttl = pipeline.execute()
    except RedisError:
        return None
    if int(failures or 0) < limit:
        return None
    return max(int(ttl), 1)


def login_failure_add(username: str, address: str) -> None:
    """One more failed login; the window starts with the first failure."""
    if not settings.PROMPTRAMP_LOGIN_FAILURES:
        return
    counter = _login_counter(username, address)
    pipeline = get_request_redis().pipeline(transaction=False)
    pipeline.set(counter, 0, ex=LOGIN_WINDOW_SECONDS, nx=True)  # INCR keeps the expiry
    pipeline.incr(counter)
    try:
        pipeline.execute()
    except RedisError as error:
        logger.warning("login throttling: a failure was not counted (%s)", type(error).__name__)
