"""A state cache's builder thread holds a database connection of its own; stopping it (the test
session does before dropping the test database) closes that connection."""

from __future__ import annotations

import pytest
from django.db import connection

from core.state_cache import StateCache
from tests.servers import wait_for


def backend_pid() -> int:
    """The PostgreSQL backend of this thread's connection: a state that names where it was built."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def connected(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)  # outside a transaction, rebuilds run on the builder thread
def test_a_stopped_builder_closes_its_connection_and_the_next_rebuild_starts_another():
    cache = StateCache("builder-test", build=backend_pid)
    try:
        first, _stale = cache.confirmed()
        assert first != backend_pid()
        assert connected(first)

        cache.stop_builder()

        wait_for(lambda: not connected(first), seconds=5)
        cache.invalidate()
        second, _stale = cache.confirmed()
        assert second not in (first, backend_pid())
        assert connected(second)
    finally:
        cache.stop_builder()
        StateCache.instances.remove(cache)
