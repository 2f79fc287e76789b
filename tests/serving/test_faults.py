"""Resolve keeps answering from the last good state while PostgreSQL or Redis is down, marked
stale, and answers fresh once they are back. The test runs its own embedded PostgreSQL and
Redis (whatever else is configured) and a real web process on them."""

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from devstack import embedded_services
from tests.servers import http_get, wait_for, web_server

RESOLVE = "/api/v1/prompts/demo.greeting/resolve?unit=user-1"


def _all_stale(url: str, key: str) -> bool:
    """Every answer of ten stale: each worker process judges on its own."""
    return all([_is_stale(url, key) for _ in range(10)])


def _all_fresh(url: str, key: str) -> bool:
    return not any([_is_stale(url, key) for _ in range(10)])


def _is_stale(url: str, key: str) -> bool:
    reply = http_get(url + RESOLVE, key=key)
    assert reply.status == 200 and reply.body["version"] == 1
    assert ("X-Promptramp-Stale" in reply.headers) == (reply.body.get("stale") is True)
    return reply.body.get("stale") is True


def test_resolve_is_served_stale_while_postgres_or_redis_is_down_and_fresh_after(own_service, tmp_path):
    root, env, key = own_service.root, own_service.env, own_service.key
    with web_server(env, tmp_path / "web.log") as url:
        assert _all_fresh(url, key)

        embedded_services.stop(["postgres"], root=root)
        wait_for(lambda: _all_stale(url, key), seconds=5)
        assert _all_stale(url, key)
        snapshot = http_get(url + "/api/v1/snapshot", key=key)
        assert snapshot.status == 200 and snapshot.headers["X-Promptramp-Stale"] == "1"

        embedded_services.ensure_running(root=root, services=["postgres"])
        wait_for(lambda: _all_fresh(url, key), seconds=5)

        embedded_services.stop(["redis"], root=root)
        wait_for(lambda: _all_stale(url, key), seconds=5)
        assert _all_stale(url, key)

        embedded_services.ensure_running(root=root, services=["redis"])
        wait_for(lambda: _all_fresh(url, key), seconds=5)


def _latencies(url: str, key: str, *, count: int, every: float = 0.01) -> list[float]:
    """Seconds each of ``count`` resolves took (each on a new connection), all answered 200."""
    took = []
    for _ in range(count):
        started = time.perf_counter()
        reply = http_get(url + RESOLVE, key=key, timeout=10)
        took.append(time.perf_counter() - started)
        assert reply.status == 200, reply.body
        time.sleep(every)
    return took


def _p99(samples: list[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.99) - 1]


def _post_events(url: str, key: str) -> tuple[int, float]:
    body = {"events": [{"event_id": str(uuid.uuid4()), "prompt": "demo.greeting", "version": 1}]}
    request = urllib.request.Request(
        url + "/api/v1/events",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - started


@contextmanager
def _hung(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP): its sockets accept connections, nothing answers."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_hung_redis_or_a_postgres_taking_no_connections_costs_resolve_at_most_50_ms(own_service, tmp_path):
    """SIGSTOP on Redis, then on PostgreSQL's postmaster (new connections hang): resolve keeps
    answering within 50 ms of its usual latency (p99), and an events batch with a valid key is
    answered 503 (Redis) or 202 (PostgreSQL) quickly, never 401."""
    root, env, key = own_service.root, own_service.env, own_service.key
    with web_server(env, tmp_path / "web.log") as url:
        assert _post_events(url, key)[0] == 202  # the version is known to the process now
        usual = _p99(_latencies(url, key, count=200))

        with _hung(int((root / "redis" / "redis.pid").read_text())):
            during = _latencies(url, key, count=300)
            events = [_post_events(url, key) for _ in range(5)]
        print(
            f"resolve p99 usual {usual * 1000:.1f} ms, Redis hung {_p99(during) * 1000:.1f} ms; "
            f"events answered in at most {max(took for _, took in events) * 1000:.0f} ms"
        )
        assert _p99(during) <= usual + 0.05, (usual, _p99(during), max(during))
        assert [status for status, _ in events] == [503] * 5
        assert max(took for _, took in events) < 1.0, events

        wait_for(lambda: _all_fresh(url, key), seconds=5)
        with _hung(int((root / "postgres" / "postmaster.pid").read_text().split()[0])):
            during = _latencies(url, key, count=300)
            events = [_post_events(url, key) for _ in range(5)]
        print(
            f"resolve p99 usual {usual * 1000:.1f} ms, PostgreSQL hung {_p99(during) * 1000:.1f} ms; "
            f"events answered in at most {max(took for _, took in events) * 1000:.0f} ms"
        )
        assert _p99(during) <= usual + 0.05, (usual, _p99(during), max(during))
        assert [status for status, _ in events] == [202] * 5
        assert max(took for _, took in events) < 1.0, events
