"""Exposure counts of the server's resolves and renders: buffered per process, flushed to Redis
by a thread of its own, read back as the traffic check reads them."""

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.redis_client import forget_clients, get_redis
from outcomes.exposures import exposures_read
from promptramp import Client
from rollouts.exposures import PREFIX, exposures_key
from serving.bucketing import bucket_of
from serving.exposures import ExposureCounter, exposure_counter
from tests.factories import make_key, make_prompt
from tests.servers import base_env, database_url, http_get, wait_for, web_server
from tests.serving.clients import django_get, fast_get
from tests.serving.helpers import put_rollout

pytestmark = pytest.mark.django_db
URL = "/api/v1/prompts/support.answer/resolve"
SALT = "answer:1"


@pytest.fixture(params=["django_view", "wsgi_short_way"])
def get(request):
    return {"django_view": django_get, "wsgi_short_way": fast_get}[request.param]


@pytest.fixture
def key(alice):
    return make_key(alice, "read")


@pytest.fixture(autouse=True)
def _no_earlier_counts() -> Iterator[None]:
    """What other tests counted (in this process, or in Redis for a rollout id used again)."""
    exposure_counter.flush()
    clear_exposure_keys()
    yield
    clear_exposure_keys()


def clear_exposure_keys() -> None:
    keys = list(get_redis().scan_iter(match=PREFIX + ":*", count=1000))
    if keys:
        get_redis().delete(*keys)


@pytest.fixture
def rollout(alice):
    return put_rollout(make_prompt(alice, versions=2), percent="50", salt=SALT)


def total(seen) -> int:
    return 0 if seen is None else seen.baseline.count + seen.candidate.count


def window(rollout):
    now = datetime.now(UTC)
    return exposures_read(
        rollout_id=rollout.pk,
        threshold=5000,
        since=now - timedelta(minutes=5),
        until=now + timedelta(minutes=5),
    )


def arm_of(unit: str) -> str:
    return "candidate" if bucket_of(SALT, unit) < 5000 else "baseline"


def test_each_resolve_counts_an_exposure_of_the_arm_it_served(key, rollout, get):
    units = [f"user-{i}" for i in range(40)]
    for unit in units:
        for _ in range(3):
            assert get(f"{URL}?unit={unit}", key=key).json()["arm"] == arm_of(unit)
    for _ in range(5):
        get(URL, key=key)  # no unit: counted, but no unit to count

    exposure_counter.flush()
    seen = window(rollout)

    candidates = sum(arm_of(unit) == "candidate" for unit in units)
    assert seen.baseline.count + seen.candidate.count == 125
    assert seen.candidate.count >= 3 * candidates
    # distinct units are a HyperLogLog's estimate: exact but for a rare collision at this size
    assert abs(seen.candidate.units - candidates) <= 1
    assert abs(seen.baseline.units - (40 - candidates)) <= 1
    # every unit's three requests land in its own bucket: the sums of squares count 3 * 3 each
    assert seen.candidate.bucket_total == seen.candidate.count
    assert seen.candidate.bucket_total_sq >= 9 * candidates


FLUSHED = ExposureCounter()  # one for every example below: each counter has a thread and exit hook
ARM_BUCKETS = st.tuples(st.sampled_from(["baseline", "candidate"]), st.integers(0, 20))  # buckets met again
FLUSH_COUNTS = st.integers(1, 40)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flushes=st.lists(
        st.dictionaries(ARM_BUCKETS, FLUSH_COUNTS, min_size=1, max_size=25), min_size=1, max_size=4
    )
)
def test_each_arms_bucket_totals_are_the_sum_and_the_sum_of_squares_of_its_bucket_counts(flushes):
    rollout_id, threshold = 9_999_001, 2500
    clear_exposure_keys()
    buckets: dict[tuple[str, int], int] = {}
    for counts in flushes:
        for (arm, bucket), count in counts.items():
            for _ in range(count):
                FLUSHED.count(rollout_id, threshold, arm, bucket, None)
            buckets[arm, bucket] = buckets.get((arm, bucket), 0) + count
        FLUSHED.flush()

    now = datetime.now(UTC)
    seen = exposures_read(
        rollout_id=rollout_id,
        threshold=threshold,
        since=now - timedelta(minutes=5),
        until=now + timedelta(minutes=5),
    )

    for arm in ("baseline", "candidate"):
        mine = [count for (of, _), count in buckets.items() if of == arm]
        assert getattr(seen, arm).count == sum(mine)
        assert getattr(seen, arm).bucket_total == sum(mine)
        assert getattr(seen, arm).bucket_total_sq == sum(count * count for count in mine)


def test_render_counts_and_the_snapshot_does_not(alice, key, rollout, client_with_key):
    api = client_with_key(alice)
    body = {"unit": "user-1", "variables": {"question": "q", "customer": "c"}}
    assert api.post("/api/v1/prompts/support.answer/render", body, format="json").status_code == 200
    assert api.get("/api/v1/snapshot").status_code == 200

    exposure_counter.flush()
    seen = window(rollout)

    assert seen.baseline.count + seen.candidate.count == 1
    assert getattr(seen, arm_of("user-1")).units == 1


def test_production_answers_count_nothing(alice, key):
    make_prompt(alice, versions=1)
    exposure_counter.flush()
    before = {k for k in get_redis().scan_iter(match="promptramp:exposures:*")}

    assert fast_get(f"{URL}?unit=u", key=key).json()["arm"] == "production"
    exposure_counter.flush()

    assert {k for k in get_redis().scan_iter(match="promptramp:exposures:*")} == before


def test_a_request_never_waits_for_redis_the_thread_flushes_within_a_second(key, rollout):
    fast_get(f"{URL}?unit=user-1", key=key)

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not get_redis().hlen(exposures_key(rollout.pk)):
        time.sleep(0.05)

    assert get_redis().hlen(exposures_key(rollout.pk)) == 1
    assert exposure_counter._flusher.thread is not None and exposure_counter._flusher.thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_parallel_requests_on_many_threads_are_all_counted(key, rollout):
    def resolve_many(thread: int) -> None:
        for i in range(100):
            fast_get(f"{URL}?unit=t{thread}-{i % 7}", key=key)

    threads = [threading.Thread(target=resolve_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    exposure_counter.flush()
    seen = window(rollout)

    assert seen.baseline.count + seen.candidate.count == 800
    assert abs(seen.baseline.units + seen.candidate.units - 56) <= 2


def test_counts_wait_for_the_next_flush_when_redis_does_not_answer(settings):
    counter = ExposureCounter()
    counter.count(7, 1000, "candidate", 12, "u-1")
    counter.count(7, 1000, "candidate", 12, "u-1")
    answering = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    forget_clients()
    try:
        counter.flush()
    finally:
        settings.REDIS_URL = answering
        forget_clients()
    get_redis().delete(exposures_key(7))

    assert counter._counts == {(7, 1000, "candidate", 12): 2}
    counter.flush(now=60 * 1000)
    assert get_redis().hgetall(exposures_key(7)) == {b"candidate:1000": b"2"}
    get_redis().delete(exposures_key(7))


@pytest.mark.django_db(transaction=True)
def test_the_sdk_reports_its_local_resolutions_and_the_server_counts_them_once(live_server, alice):
    rollout = put_rollout(make_prompt(alice, versions=2), percent="50", salt=SALT)
    client = Client(live_server.url, make_key(alice, "read,ingest"), stream=False, refresh_interval=3600)
    try:
        units = [f"sdk-{i}" for i in range(30)]
        answers = [client.get("support.answer", unit=unit) for unit in units]
        assert client.flush(timeout=10)
        counts = client.event_counts()
    finally:
        client.close()

    seen = window(rollout)
    candidates = sum(answer.arm == "candidate" for answer in answers)
    assert [answer.arm for answer in answers] == [arm_of(unit) for unit in units]
    assert (seen.candidate.count, seen.baseline.count) == (candidates, 30 - candidates)
    assert (counts.exposures_sent, counts.exposures_dropped) == (30, 0)


@pytest.mark.django_db(transaction=True)
def test_the_web_servers_forked_workers_each_count_and_flush_within_a_second(alice, tmp_path):
    """The run command's server (its workers forked from one parent): every resolve, through the
    WSGI short way with a Bearer key, is in Redis a second or so after it was answered."""
    rollout = put_rollout(make_prompt(alice, versions=2), percent="50", salt=SALT)
    key = make_key(alice, "read")
    env = base_env(DATABASE_URL=database_url(connection.settings_dict))

    with web_server(env, tmp_path / "web.log") as url:
        for i in range(60):
            assert http_get(f"{url}{URL}?unit=w-{i % 20}", key=key).body["arm"] == arm_of(f"w-{i % 20}")
        wait_for(lambda: served(window(rollout)) >= 60, seconds=3.0)

    seen = window(rollout)
    assert served(seen) == 60
    assert abs(seen.baseline.units + seen.candidate.units - 20) <= 1


def served(seen) -> int:
    """The servers' own exposures (their per-bucket counts: SDKs report none)."""
    return 0 if seen is None else seen.baseline.bucket_total + seen.candidate.bucket_total


def test_a_forked_child_starts_with_empty_counts_and_a_thread_of_its_own():
    counter = ExposureCounter()
    counter.count(7, 1000, "candidate", 1, "parent-unit")
    pid = os.fork()
    if pid == 0:  # the child: as a web server's worker starts
        fresh = counter._counts == {} and counter._units == {} and counter._flusher.thread is None
        counter.count(8, 1000, "baseline", 2, "child-unit")
        running = counter._flusher.thread is not None and counter._flusher.thread.is_alive()
        os._exit(0 if fresh and running else 1)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert counter._counts == {(7, 1000, "candidate", 1): 1}
