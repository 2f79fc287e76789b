"""How the client behaves when the server fails, against a local server scripted to fail."""

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import promptramp
from promptramp import Client

from .fake_server import API_KEY, DEMO_PROMPTS, FakeServer, text_version

MakeClient = Callable[..., Client]
SNAPSHOT = "/api/v1/snapshot"
EVENTS = "/api/v1/events"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_refresh_sends_the_etag_and_a_304_keeps_the_snapshot(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url)
    first = client.snapshot

    assert client.refresh()

    fetches = fake_server.received(SNAPSHOT)
    assert [request.status for request in fetches] == [200, 304]
    assert fetches[1].headers["If-None-Match"] == first.etag  # type: ignore[union-attr]
    assert fetches[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert client.snapshot is first


def test_the_last_good_snapshot_serves_while_refreshes_fail(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url)
    before = client.get("support.answer", unit="user-1")
    fake_server.fail_next(SNAPSHOT, 500)

    refreshed = client.refresh()
    fake_server.stop()
    refreshed_while_down = client.refresh()

    assert (refreshed, refreshed_while_down) == (False, False)
    assert client.get("support.answer", unit="user-1") == before


def test_a_malformed_snapshot_is_ignored(fake_server: FakeServer, make_client: MakeClient) -> None:
    client = make_client(fake_server.base_url)
    fake_server.set_prompts({"p": {"production": {"version": 1, "kind": "audio"}}})

    assert not client.refresh()
    assert client.get("summarize", unit="u1").name == "summarize"


def test_the_background_refresh_brings_a_rollback_to_every_unit(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, refresh_interval=0.05)
    units = [f"user-{i}" for i in range(100)]
    assert "candidate" in {client.get("support.answer", unit=unit).arm for unit in units}

    fake_server.set_prompts(
        DEMO_PROMPTS | {"support.answer": {"production": text_version(3, "Back"), "rollout": None}}
    )

    assert wait_until(lambda: client.get("support.answer", unit="user-1").arm == "production")
    assert {client.get("support.answer", unit=unit).version for unit in units} == {3}


def test_a_wrong_api_key_leaves_the_client_on_its_defaults(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, "wrong-key", defaults={"summarize": "Fallback"})

    assert client.snapshot is None
    assert client.get("summarize").template == "Fallback"


@pytest.mark.parametrize("status", [429, 503])
def test_a_shed_batch_is_retried_after_retry_after(
    status: int, fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)
    fake_server.fail_next(EVENTS, status, headers={"Retry-After": "1"})

    client.report(client.get("support.answer", unit="u1"), latency_ms=10)
    delivered = client.flush(timeout=10)

    posts = fake_server.received(EVENTS)
    assert delivered
    assert [post.status for post in posts] == [status, 202]
    assert posts[1].at - posts[0].at >= 0.95
    counts = client.event_counts()
    assert (counts.retries, counts.accepted, counts.pending) == (1, 1, 0)


def test_a_server_error_is_retried_with_backoff(fake_server: FakeServer, make_client: MakeClient) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)
    fake_server.fail_next(EVENTS, 500, times=2)

    client.report(client.get("summarize", unit="u1"), latency_ms=10)

    assert client.flush(timeout=10)
    assert [post.status for post in fake_server.received(EVENTS)] == [500, 500, 202]
    assert client.event_counts().retries == 2


def test_a_batch_refused_with_400_is_dropped_and_later_batches_still_go(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)
    result = client.get("summarize", unit="u1")
    fake_server.fail_next(EVENTS, 400)

    client.report(result, latency_ms=1)
    client.flush(timeout=5)
    client.report(result, latency_ms=2)
    client.flush(timeout=5)

    assert [post.status for post in fake_server.received(EVENTS)] == [400, 202]
    assert [event["latency_ms"] for event in fake_server.events.values()] == [2]
    counts = client.event_counts()
    assert (counts.rejected, counts.accepted, counts.retries) == (1, 1, 0)


def test_flush_gives_up_at_its_timeout_while_the_server_sheds_load(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600)
    fake_server.fail_next(EVENTS, 503, headers={"Retry-After": "30"})
    client.report(client.get("summarize", unit="u1"), latency_ms=10)

    started = time.monotonic()
    delivered = client.flush(timeout=0.3)

    assert not delivered
    assert time.monotonic() - started < 2
    assert client.event_counts().pending == 1


def test_close_delivers_the_queued_events(fake_server: FakeServer) -> None:
    client = Client(fake_server.base_url, API_KEY, flush_interval=3600)
    for unit in ("a", "b", "c"):
        client.report(client.get("summarize", unit=unit), latency_ms=5)

    assert client.close()
    assert len(fake_server.events) == 3


def test_events_are_flushed_when_the_program_exits(fake_server: FakeServer) -> None:
    program = textwrap.dedent(
        f"""
        import promptramp
        client = promptramp.Client({fake_server.base_url!r}, {API_KEY!r}, flush_interval=3600)
        client.report(client.get("summarize", unit="u1"), latency_ms=7)
        """
    )
    package_dir = str(Path(promptramp.__file__).parents[1])
    env = os.environ | {"PYTHONPATH": package_dir}

    subprocess.run([sys.executable, "-c", program], env=env, check=True, timeout=30)

    assert [event["latency_ms"] for event in fake_server.events.values()] == [7]


def test_events_a_400_names_are_dropped_and_the_rest_of_the_batch_is_sent_again(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    """A rule that depends on the server's state (a rollout's 20 score names) cannot be checked
    before sending: the server names the refused events, and only those are lost."""
    client = make_client(fake_server.base_url, flush_interval=3600)
    fake_server.refused_scores = {"name_21"}
    result = client.get("summarize", unit="u1")
    client.report(result, latency_ms=1, scores={"helpfulness": 0.8})
    client.report(result, latency_ms=2, scores={"name_21": 0.5})
    client.report(result, latency_ms=3)

    assert client.flush(timeout=5)

    assert [post.status for post in fake_server.received(EVENTS)] == [400, 202]
    assert sorted(event["latency_ms"] for event in fake_server.events.values()) == [1, 3]
    counts = client.event_counts()
    assert (counts.rejected, counts.accepted, counts.retries, counts.pending) == (1, 2, 0, 0)


def test_a_retry_after_longer_than_max_backoff_waits_only_max_backoff(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, flush_interval=3600, max_backoff=0.5)
    fake_server.fail_next(EVENTS, 429, headers={"Retry-After": "1000000000"})
    client.report(client.get("summarize", unit="u1"), latency_ms=10)

    assert client.flush(timeout=5)

    posts = fake_server.received(EVENTS)
    assert [post.status for post in posts] == [429, 202]
    assert posts[1].at - posts[0].at < 1.5


def test_a_429_on_the_snapshot_holds_the_next_poll_for_its_retry_after(
    fake_server: FakeServer, make_client: MakeClient
) -> None:
    client = make_client(fake_server.base_url, refresh_interval=0.1, stream=False)
    fake_server.fail_next(SNAPSHOT, 429, headers={"Retry-After": "1"})
    fake_server.set_prompts({"summarize": {"production": text_version(9, "Rate limited"), "rollout": None}})

    assert wait_until(lambda: client.get("summarize").version == 9, timeout=5)

    polls = fake_server.received(SNAPSHOT)
    refused = next(index for index, poll in enumerate(polls) if poll.status == 429)
    assert polls[refused + 1].at - polls[refused].at >= 0.95


def test_a_redirect_to_another_host_does_not_carry_the_key(make_client: MakeClient) -> None:
    elsewhere, home = FakeServer(), FakeServer()
    try:
        home.redirects[SNAPSHOT] = elsewhere.base_url + SNAPSHOT

        client = make_client(home.base_url)

        assert client.snapshot is None  # the other host refused a request without the key
        (followed,) = elsewhere.received(SNAPSHOT)
        assert "Authorization" not in followed.headers
        assert followed.status == 401
    finally:
        elsewhere.stop()
        home.stop()
