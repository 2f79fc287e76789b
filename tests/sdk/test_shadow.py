"""`client.get(..., shadow=callback)`: shadow runs on a small background pool, with real threads;
and the snapshot's `format`, which an SDK that does not know it refuses."""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import mmh3
import pytest

from promptramp import Client, Outcome

from .fake_server import FakeServer, rollout, text_version

MakeClient = Callable[..., Client]
SALT = "support.answer:7"
SHADOW_PROMPTS = {
    "support.answer": {
        "production": text_version(3, "Answer {{question}}"),
        "rollout": {
            **rollout(
                7,
                0,
                baseline=text_version(3, "Answer {{question}}"),
                candidate=text_version(4, "Answer {{question}} in {{tone}}"),
                salt=SALT,
            ),
            "shadow_percent": 50,
        },
    }
}


def bucket(unit: str) -> int:
    return mmh3.hash(f"{SALT}:{unit}".encode(), 0, False) % 10000


SAMPLED = [f"user-{n}" for n in range(400) if bucket(f"user-{n}") < 5000]
OUTSIDE = [f"user-{n}" for n in range(400) if bucket(f"user-{n}") >= 5000]


@pytest.fixture
def server() -> Any:
    server = FakeServer()
    server.set_prompts(SHADOW_PROMPTS, snapshot_format=2)
    yield server
    server.stop()


def events_of(server: FakeServer, arm: str) -> list[dict[str, Any]]:
    return [event for event in server.events.values() if event["arm"] == arm]


def test_the_sample_gets_the_baseline_with_the_candidate_as_shadow(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(server.base_url)

    inside = client.get("support.answer", unit=SAMPLED[0], variables={"question": "Q", "tone": "warm"})
    outside = client.get("support.answer", unit=OUTSIDE[0], variables={"question": "Q", "tone": "warm"})

    assert (inside.arm, inside.version, inside.rendered) == ("baseline", 3, "Answer Q")
    assert inside.shadow is not None and inside.shadow_sample
    assert (inside.shadow.arm, inside.shadow.version, inside.shadow.rendered) == (
        "shadow",
        4,
        "Answer Q in warm",
    )
    assert inside.as_dict()["shadow"]["version"] == 4
    assert (outside.arm, outside.shadow, outside.shadow_sample) == ("baseline", None, False)


def test_a_shadow_missing_a_variable_is_left_out_with_shadow_error(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(server.base_url)

    result = client.get("support.answer", unit=SAMPLED[0], variables={"question": "Q"})

    assert result.rendered == "Answer Q" and result.shadow is None and result.shadow_sample
    assert result.shadow_error == {
        "code": "missing_variables",
        "message": "Missing variables: tone.",
        "missing": ["tone"],
    }


def test_the_callback_runs_off_the_callers_thread_and_is_reported_as_shadow(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(server.base_url, flush_interval=0.05)
    release = threading.Event()
    ran_on: list[str] = []

    def run(outcome: Outcome) -> None:
        ran_on.append(threading.current_thread().name)
        release.wait(5)
        outcome.cost_usd = 0.01

    started = time.perf_counter()
    result = client.get("support.answer", unit=SAMPLED[0], shadow=run)
    with client.track(result):
        pass
    returned = time.perf_counter() - started
    release.set()

    assert returned < 0.5  # the caller did not wait for the run it started
    deadline = time.monotonic() + 5
    while len(events_of(server, "shadow")) < 1 and time.monotonic() < deadline:
        client.flush(1)
    (shadow,) = events_of(server, "shadow")
    (baseline,) = events_of(server, "baseline")
    assert ran_on == ["promptramp-shadow"]
    assert (shadow["version"], shadow["rollout_id"], shadow["error"], shadow["cost_usd"]) == (
        4,
        7,
        False,
        0.01,
    )
    assert "shadow_sample" not in shadow
    assert baseline["shadow_sample"] is True and baseline["version"] == 3
    assert client.shadow_counts().succeeded == 1


def test_units_outside_the_sample_start_no_run_and_report_no_shadow_sample(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(server.base_url)
    calls: list[Outcome] = []

    for unit in OUTSIDE[:20]:
        client.report(client.get("support.answer", unit=unit, shadow=calls.append), latency_ms=5)
    client.flush(5)

    assert calls == [] and client.shadow_counts().started == 0
    assert len(events_of(server, "baseline")) == 20
    assert not any("shadow_sample" in event for event in server.events.values())


def test_a_callback_that_raises_is_reported_as_an_error_and_the_caller_never_sees_it(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(server.base_url)

    def broken(outcome: Outcome) -> None:
        raise TimeoutError("the provider timed out")

    result = client.get("support.answer", unit=SAMPLED[0], shadow=broken)
    client.close(timeout=5)

    assert result.arm == "baseline"
    (shadow,) = events_of(server, "shadow")
    assert (shadow["error"], shadow["error_type"]) == (True, "TimeoutError")
    assert client.shadow_counts().failed == 1


def test_a_run_is_timed_from_its_start_not_from_its_wait_in_the_queue(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(server.base_url, shadow_concurrency=1)
    first_done = threading.Event()

    def slow(outcome: Outcome) -> None:
        time.sleep(0.4)
        first_done.set()

    def quick(outcome: Outcome) -> None:
        assert first_done.is_set()  # it waited behind the slow one
        time.sleep(0.05)

    client.get("support.answer", unit=SAMPLED[0], shadow=slow)
    client.get("support.answer", unit=SAMPLED[1], shadow=quick)
    client.close(timeout=5)

    latencies = sorted(event["latency_ms"] for event in events_of(server, "shadow"))
    assert len(latencies) == 2
    assert 40 <= latencies[0] < 300  # the quick run: not the ~400 ms it queued
    assert latencies[1] >= 400


def test_at_most_the_concurrency_cap_runs_at_once_and_the_excess_is_dropped_and_counted(
    server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(server.base_url, shadow_queue=0)
    release = threading.Event()
    lock = threading.Lock()
    running, most = [0], [0]

    def hold(outcome: Outcome) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1

    callers = [
        threading.Thread(target=client.get, args=("support.answer",), kwargs={"unit": unit, "shadow": hold})
        for unit in SAMPLED[:12]
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(5)
    deadline = time.monotonic() + 5
    while client.shadow_counts().running < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    counts = client.shadow_counts()
    release.set()
    client.close(timeout=5)

    assert most[0] == 4 and counts.running == 4
    assert counts.dropped_queue == 8 and counts.dropped == 8
    assert client.shadow_counts().succeeded == 4 and len(events_of(server, "shadow")) == 4


def test_runs_beyond_the_per_minute_cap_are_dropped_and_counted(
    server: FakeServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(server.base_url, shadow_per_minute=3, shadow_queue=100)
    done: list[int] = []

    with caplog.at_level(logging.WARNING, logger="promptramp"):
        for unit in SAMPLED[:10]:
            client.get("support.answer", unit=unit, shadow=lambda outcome: done.append(1))
        client.close(timeout=5)

    counts = client.shadow_counts()
    assert (counts.started, counts.dropped_rate, len(done)) == (3, 7, 3)
    assert "shadow run dropped (rate)" in caplog.text


def test_a_snapshot_of_an_unknown_format_is_refused_and_the_last_one_keeps_serving(
    server: FakeServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(server.base_url)
    assert client.get("support.answer", unit=OUTSIDE[0]).stale is False

    server.set_prompts(
        {"support.answer": {"production": text_version(9, "v9"), "rollout": None}}, snapshot_format=3
    )
    with caplog.at_level(logging.ERROR, logger="promptramp"):
        refreshed = client.refresh()

    result = client.get("support.answer", unit=OUTSIDE[0])
    assert refreshed is False and client.unsupported_format == 3
    assert (result.version, result.arm, result.stale) == (3, "baseline", True)
    assert "snapshot format 3 is not one this SDK knows" in caplog.text
    server.set_prompts(SHADOW_PROMPTS, snapshot_format=2)
    assert client.refresh() and client.unsupported_format is None
    assert client.get("support.answer", unit=OUTSIDE[0]).stale is False
