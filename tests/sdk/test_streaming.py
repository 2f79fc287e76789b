"""The SDK following the snapshot stream of a real service (a web server and the stream process
on the test database), falling back to polling, and its staleness rule."""

import socket
import time
from collections.abc import Iterator

import pytest
from django.db import connection

from registry.services import label_move
from rollouts.services import rollout_create, rollout_rollback
from tests.factories import actor_for, make_key, make_prompt
from tests.servers import base_env, database_url, free_port, http_get, wait_for, web_server
from tests.serving.helpers import put_rollout
from tests.serving.stream_helpers import Service, service, stream_server


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Service]:
    with service(tmp_path_factory.mktemp("sdk-stream")) as live:
        yield live


def _usable_key(web: str, user, scopes: str = "read") -> str:  # type: ignore[no-untyped-def]
    """A new key, once the web server's workers know it."""
    key = make_key(user, scopes)

    def answered() -> bool:
        return all(http_get(web + "/api/v1/snapshot", key=key).status == 200 for _ in range(6))

    wait_for(answered, seconds=5)
    return key


@pytest.mark.django_db(transaction=True)
def test_a_rollback_reaches_a_streaming_clients_get_well_within_a_second(live, alice, make_client):
    rollout = put_rollout(make_prompt(alice, versions=2), baseline=1, candidate=2, percent="100")
    client = make_client(live.web, _usable_key(live.web, alice), refresh_interval=30)
    wait_for(lambda: client.streaming, seconds=5)
    assert client.get("support.answer", unit="user-1").arm == "candidate"

    rollout_rollback(actor=actor_for(alice), rollout_id=rollout.pk, reason="regressed")

    took = wait_for(lambda: client.get("support.answer", unit="user-1").version == 1, seconds=2, every=0.002)
    assert took < 0.5
    assert client.get("support.answer", unit="user-1").arm == "production"
    assert not client.get("support.answer", unit="user-1").stale


@pytest.mark.django_db(transaction=True)
def test_on_snapshot_sees_each_snapshot_the_stream_brings(live, alice, make_client):
    make_prompt(alice, versions=2)
    key = _usable_key(live.web, alice)
    seen: list[str | None] = []
    client = make_client(live.web, key, refresh_interval=30, on_snapshot=lambda s: seen.append(s.etag))
    wait_for(lambda: client.streaming, seconds=5)

    label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=2)

    wait_for(lambda: client.get("support.answer").version == 2, seconds=1, every=0.005)
    assert len(seen) >= 2 and seen[-1] == client.snapshot.etag
    # the stream's ids are the snapshot's ETags (the web process confirms within 0.5 s)
    wait_for(lambda: http_get(live.web + "/api/v1/snapshot", key=key).headers["ETag"] == seen[-1], seconds=1)


@pytest.mark.django_db(transaction=True)
def test_a_client_polls_while_the_stream_process_is_down_and_streams_again_once_it_is_back(
    alice, make_client, tmp_path
):
    make_prompt(alice, versions=2)
    port = free_port()
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), STREAM_PORT=str(port))
    with web_server(env, tmp_path / "web.log") as web:
        key = _usable_key(web, alice)
        with stream_server(env, port, tmp_path / "stream.log"):
            seen: list[str | None] = []
            client = make_client(
                web, key, refresh_interval=0.5, max_backoff=1, on_snapshot=lambda s: seen.append(s.etag)
            )
            wait_for(lambda: client.streaming, seconds=5)
        wait_for(lambda: not client.streaming, seconds=2)  # it reads the end of the stream

        label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=2)
        wait_for(lambda: client.get("support.answer").version == 2, seconds=2)  # by a poll

        with stream_server(env, port, tmp_path / "stream-again.log"):
            wait_for(lambda: client.streaming, seconds=5)
            seen_before = len(seen)
            time.sleep(0.5)
            assert len(seen) == seen_before  # resumed with Last-Event-ID: no snapshot resent
            label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=1)
            wait_for(lambda: client.get("support.answer").version == 1, seconds=1, every=0.005)
            assert not client.get("support.answer").stale
            assert len(seen) == seen_before + 1


@pytest.mark.django_db(transaction=True)
def test_without_the_stream_process_the_client_polls(alice, make_client, tmp_path):
    make_prompt(alice, versions=2)
    nothing_listens = free_port()
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), STREAM_PORT=str(nothing_listens))
    with web_server(env, tmp_path / "web.log") as web:
        client = make_client(web, _usable_key(web, alice), refresh_interval=0.3)
        assert client.get("support.answer").version == 1

        label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=2)

        wait_for(lambda: client.get("support.answer").version == 2, seconds=2)
        assert not client.streaming
        assert not client.get("support.answer").stale


def test_a_stream_on_another_host_is_never_connected_to(fake_server, make_client):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    fake_server.stream_link = f"http://localhost:{port}/api/v1/snapshot/stream"

    client = make_client(fake_server.base_url, refresh_interval=0.2)
    time.sleep(1.0)

    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert not client.streaming
    assert len(fake_server.received("/api/v1/snapshot")) >= 3  # it polls instead


def test_a_snapshot_unconfirmed_for_three_refresh_intervals_answers_stale(fake_server, make_client):
    client = make_client(fake_server.base_url, refresh_interval=0.2)
    fresh = client.get("support.answer", unit="user-1")
    fake_server.fail_next("/api/v1/snapshot", 503, times=1000)

    wait_for(lambda: client.get("support.answer", unit="user-1").stale, seconds=2, every=0.01)
    stale = client.get("support.answer", unit="user-1")

    assert not fresh.stale
    assert stale.version == fresh.version and stale.as_dict()["stale"] is True
    assert "stale" not in fresh.as_dict()


def test_answers_of_a_server_that_is_itself_stale_do_not_confirm_the_snapshot(fake_server, make_client):
    client = make_client(fake_server.base_url, refresh_interval=0.2)
    assert not client.get("support.answer", unit="user-1").stale

    fake_server.stale = True

    wait_for(lambda: client.get("support.answer", unit="user-1").stale, seconds=2, every=0.01)
    assert len(fake_server.received("/api/v1/snapshot")) >= 3  # answered, but unconfirmed


@pytest.mark.django_db(transaction=True)
def test_a_shadow_step_reaches_a_streaming_client_as_shadows_never_as_the_candidate(live, alice, make_client):
    make_prompt(alice, versions=2)
    client = make_client(live.web, _usable_key(live.web, alice), refresh_interval=30)
    wait_for(lambda: client.streaming, seconds=5)
    units = [f"user-{n}" for n in range(200)]

    rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=[
            {"shadow": True, "percent": 50, "min_duration_s": 600, "min_samples": 200},
            {"percent": 100, "min_duration_s": 0, "min_samples": 0},
        ],
    )

    wait_for(lambda: client.get("support.answer", unit="user-1").arm == "baseline", seconds=2, every=0.005)
    results = [client.get("support.answer", unit=unit) for unit in units]
    assert client.unsupported_format is None and not any(result.stale for result in results)
    assert {(result.arm, result.version) for result in results} == {("baseline", 1)}
    shadowed = [result for result in results if result.shadow is not None]
    assert 60 < len(shadowed) < 140 and {result.shadow.version for result in shadowed} == {2}
