"""Redis connection pools, one of each per process, with short timeouts so an outage is noticed
fast: ``get_redis`` for background work and writes (retries a failed command three times),
``get_request_redis`` for what a request waits on (a deadline of ``REQUEST_TIMEOUT_SECONDS``
for each read, connecting included, and no retry), so a hung Redis costs a request well under a
second before its 503 (which asks the client to retry), and ``get_checking_redis`` for the
serving state's change counter (``CHECK_TIMEOUT_SECONDS``: the 50 ms a serving request may pay
beyond its usual latency, PROMPTRAMP_SERVING_WAIT_MS, less 5 ms for the request's own work; no
retry: core.state_cache then answers from its last good state)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

REQUEST_TIMEOUT_SECONDS = 0.25
SERVING_WAIT_SECONDS: float = settings.PROMPTRAMP_SERVING_WAIT_SECONDS
CHECK_TIMEOUT_SECONDS = max(0.005, SERVING_WAIT_SECONDS - 0.005)


def _client(timeout: float, retry: Retry | None = None) -> redis.Redis:
    options = {} if retry is None else {"retry": retry}
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        **options,
    )


@functools.cache
def get_redis() -> redis.Redis:
    return _client(0.5)


@functools.cache
def get_request_redis() -> redis.Redis:
    return _client(REQUEST_TIMEOUT_SECONDS, Retry(NoBackoff(), 0))


@functools.cache
def get_checking_redis() -> redis.Redis:
    return _client(CHECK_TIMEOUT_SECONDS, Retry(NoBackoff(), 0))


def forget_clients() -> None:
    """Connect afresh on next use (tests that point REDIS_URL at a Redis of their own)."""
    for client in (get_redis, get_request_redis, get_checking_redis):
        client.cache_clear()
