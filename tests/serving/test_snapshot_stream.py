"""GET /api/v1/snapshot/stream, served by a real stream process (uvicorn) beside a real web
server (gunicorn), both on the test database and Redis."""

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import psutil
import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.db import connection
from schemathesis import checks

from access.models import ApiKey
from access.services import apikey_revoke
from core.actors import Actor
from core.redis_client import get_redis
from core.state_cache import API_KEYS_STATE, SERVING_STATE, generation_key, state_changed
from registry.services import label_move
from rollouts.models import Rollout
from rollouts.services import rollout_rollback
from serving.api.views import stream_url
from serving.services import override_create, override_delete
from tests.factories import actor_for, make_key, make_prompt
from tests.servers import base_env, database_url, free_port, http_get, wait_for
from tests.serving.helpers import put_rollout, set_rollout
from tests.serving.stream_helpers import STREAM_PATH, Service, SSEReader, service, stream_server

pytestmark = pytest.mark.django_db(transaction=True)
KEEPALIVE_SECONDS = 0.5


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Service]:
    with service(
        tmp_path_factory.mktemp("stream"), PROMPTRAMP_STREAM_KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS)
    ) as s:
        yield s


@pytest.fixture
def readers() -> Iterator[list[SSEReader]]:
    opened: list[SSEReader] = []
    yield opened
    for reader in opened:
        reader.close()


def _open(live: Service, readers: list[SSEReader], key: str, last_event_id: str | None = None) -> SSEReader:
    reader = SSEReader(live.stream, key, last_event_id)
    readers.append(reader)
    return reader


def test_a_stream_starts_with_the_snapshot_its_id_the_snapshots_etag(live, readers, alice):
    make_prompt(alice, versions=2)
    key = make_key(alice, "read")
    snapshot = http_get(live.web + "/api/v1/snapshot", key=key)

    reader = _open(live, readers, key)

    assert reader.status == 200
    assert reader.headers["Content-Type"] == "text/event-stream"
    first = reader.next_event("snapshot")
    assert first.id == snapshot.headers["ETag"]
    assert first.data["prompts"] == snapshot.body["prompts"]


def test_a_rollback_sends_a_change_holding_only_that_prompt_within_a_second(live, readers, alice):
    prompt = make_prompt(alice, versions=2)
    make_prompt(alice, name="support.other", versions=1)
    rollout = put_rollout(prompt, baseline=1, candidate=2, percent="10")
    key = make_key(alice, "read")
    reader = _open(live, readers, key)
    assert reader.next_event("snapshot").data["prompts"]["support.answer"]["rollout"]["id"] == rollout.pk

    rollout_rollback(actor=actor_for(alice), rollout_id=rollout.pk, reason="bad")
    answered = time.monotonic()

    change = reader.next_event("change")
    assert change.at - answered < 1.0
    assert list(change.data["prompts"]) == ["support.answer"]
    assert change.data["prompts"]["support.answer"]["rollout"] is None
    assert change.data["prompts"]["support.answer"]["production"]["version"] == 1
    assert change.data["removed"] == []
    # its id is the snapshot's ETag, as the web processes serve it (they confirm within 0.5 s)
    snapshot_url = live.web + "/api/v1/snapshot"
    wait_for(lambda: http_get(snapshot_url, key=key).headers.get("ETag") == change.id, seconds=2)


def test_a_label_move_sends_a_change_holding_only_that_prompt(live, readers, alice):
    make_prompt(alice, versions=2)
    make_prompt(alice, name="support.other", versions=1)
    reader = _open(live, readers, make_key(alice, "read"))
    reader.next_event("snapshot")

    label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=2)

    change = reader.next_event("change")
    assert list(change.data["prompts"]) == ["support.answer"]
    assert change.data["prompts"]["support.answer"]["production"]["version"] == 2


def test_an_override_added_and_ended_sends_changes_holding_that_prompt(live, readers, alice):
    make_prompt(alice, versions=2)
    make_prompt(alice, name="support.other", versions=1)
    reader = _open(live, readers, make_key(alice, "read"))
    reader.next_event("snapshot")

    override = override_create(
        actor=actor_for(alice), prompt_name="support.answer", match={"unit": "qa-7"}, arm="candidate"
    )

    change = reader.next_event("change")
    assert list(change.data["prompts"]) == ["support.answer"]
    assert [(o["id"], o["version"]) for o in change.data["prompts"]["support.answer"]["overrides"]] == [
        (override.pk, 1)
    ]
    override_delete(actor=actor_for(alice), prompt_name="support.answer", override_id=override.pk)
    change = reader.next_event("change")
    assert "overrides" not in change.data["prompts"]["support.answer"]


def test_a_change_announced_by_the_counter_alone_is_streamed_within_a_second(live, readers, alice):
    rollout = put_rollout(make_prompt(alice, versions=2), percent="10")
    reader = _open(live, readers, make_key(alice, "read"))
    reader.next_event("snapshot")

    Rollout.objects.filter(pk=rollout.pk).update(percent=50)
    get_redis().incr(generation_key(SERVING_STATE))  # as when pub/sub is unavailable: no message
    counted = time.monotonic()

    change = reader.next_event("change")
    assert change.data["prompts"]["support.answer"]["rollout"]["percent"] == 50
    assert change.at - counted < 1.0


def test_changes_in_quick_succession_are_coalesced_to_one_event_per_100_ms(live, readers, alice):
    rollout = put_rollout(make_prompt(alice, versions=2), percent="1")
    reader = _open(live, readers, make_key(alice, "read"))
    reader.next_event("snapshot")

    def change_quickly() -> None:
        for percent in range(2, 31):
            set_rollout(rollout, percent=percent)
            time.sleep(0.01)
        connection.close()  # this thread's own

    writer = threading.Thread(target=change_quickly)
    writer.start()
    changes = [reader.next_event("change")]
    while changes[-1].data["prompts"]["support.answer"]["rollout"]["percent"] != 30:
        changes.append(reader.next_event("change"))
    writer.join()
    assert len(changes) < 29 / 3
    # Each event's state was built by the stream process at generated_at: 100 ms apart at least
    # (times of reading here would bunch up whenever this test process waits for a core).
    built = [datetime.fromisoformat(change.data["generated_at"]) for change in changes]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(built, built[1:], strict=False)]
    assert all(gap >= 0.1 for gap in gaps), gaps


def test_a_client_resuming_with_the_current_etag_gets_nothing_until_the_next_change(live, readers, alice):
    prompt = make_prompt(alice, versions=2)
    key = make_key(alice, "read")
    current = _open(live, readers, key).next_event("snapshot").id

    resumed = _open(live, readers, key, last_event_id=current)
    outdated = _open(live, readers, key, last_event_id='W/"an-older-snapshot"')
    time.sleep(0.3)  # nothing is sent meanwhile: the next thing read is the change
    label_move(actor=actor_for(alice), prompt_name=prompt.name, label="production", version=2)

    change = resumed.next_event("change")
    assert change.data["prompts"]["support.answer"]["production"]["version"] == 2
    assert outdated.next_event("snapshot").id == current


def test_a_quiet_stream_sends_a_keepalive_comment(live, readers, alice):
    make_prompt(alice)
    reader = _open(live, readers, make_key(alice, "read"))
    opened = reader.next(comments=True)
    assert opened is not None and opened.event == "snapshot"

    comments = [reader.next(comments=True) for _ in range(2)]

    assert [(c.event, c.data) for c in comments if c] == [("", "keepalive"), ("", "keepalive")]
    assert comments[1].at - comments[0].at == pytest.approx(KEEPALIVE_SECONDS, abs=0.2)


def test_a_revoked_keys_stream_ends_within_a_second(live, readers, alice):
    make_prompt(alice)
    key = make_key(alice, "read")
    reader = _open(live, readers, key)
    reader.next_event("snapshot")

    apikey_revoke(actor=Actor.system(), key_id=ApiKey.objects.get(user=alice).pk)
    revoked = time.monotonic()

    assert reader.next() is None
    assert time.monotonic() - revoked < 1.0
    refused = SSEReader(live.stream, key)
    assert refused.status == 401
    refused.close()


def _narrow_scopes(user) -> None:  # type: ignore[no-untyped-def]
    ApiKey.objects.filter(user=user).update(scopes=["ingest"])


def _deactivate(user) -> None:  # type: ignore[no-untyped-def]
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)


@pytest.mark.parametrize("take_away", [_narrow_scopes, _deactivate], ids=["narrowed", "deactivated"])
def test_a_stream_ends_within_a_second_when_its_key_no_longer_reads(live, readers, alice, take_away):
    make_prompt(alice)
    reader = _open(live, readers, make_key(alice, "read"))
    reader.next_event("snapshot")

    take_away(alice)
    state_changed(API_KEYS_STATE)  # as every path that changes keys or users announces it
    changed = time.monotonic()

    assert reader.next() is None
    assert time.monotonic() - changed < 1.0


def test_a_stream_needs_a_key_that_reads(live, alice):
    make_prompt(alice)
    for key, status in ((None, 401), ("not-a-key", 401), (make_key(alice, "ingest"), 403)):
        reply = http_get(live.stream + STREAM_PATH, key=key)
        assert reply.status == status
        assert "error" in reply.body


def test_the_stream_process_answers_as_the_schema_describes_the_stream(live, readers, alice, client):
    make_prompt(alice)
    schema = schemathesis.openapi.from_dict(
        client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    )
    operation = schema[STREAM_PATH]["GET"]
    documented = operation.definition.raw["responses"]["200"]

    for key, status in ((None, 401), (make_key(alice, "ingest"), 403)):
        case = operation.Case(headers={"Authorization": f"Bearer {key}"} if key else {})
        response = case.call(base_url=live.stream)
        assert response.status_code == status
        case.validate_response(
            response,
            checks=[
                checks.status_code_conformance,
                checks.content_type_conformance,
                checks.response_schema_conformance,
            ],
        )
    reader = _open(live, readers, make_key(alice, "read"))
    assert reader.status == 200
    assert reader.headers["Content-Type"] in documented["content"]
    assert reader.headers["Cache-Control"] in documented["headers"]["Cache-Control"]["schema"]["enum"]
    reader.next_event("snapshot")


def test_the_web_server_has_no_stream(live, alice):
    make_prompt(alice)

    reply = http_get(live.web + STREAM_PATH, key=make_key(alice, "read"))

    assert reply.status == 404


def test_the_snapshot_names_the_stream_on_its_host_and_stream_port(live, alice):
    make_prompt(alice)
    key = make_key(alice, "read")

    reply = http_get(live.web + "/api/v1/snapshot", key=key)
    revalidated = urllib.request.Request(
        live.web + "/api/v1/snapshot",
        headers={"Authorization": f"Bearer {key}", "If-None-Match": reply.headers["ETag"]},
    )

    expected = f'<http://127.0.0.1:{live.stream_port}/api/v1/snapshot/stream>; rel="stream"'
    assert reply.headers["Link"] == expected
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(revalidated, timeout=5)
    assert not_modified.value.code == 304
    assert not_modified.value.headers["Link"] == expected


def test_the_stream_url_setting_overrides_the_link(client_with_key, alice, settings):
    make_prompt(alice)
    settings.PROMPTRAMP_STREAM_URL = "https://stream.example.test/api/v1/snapshot/stream"

    response = client_with_key(alice, "read").get("/api/v1/snapshot")

    assert response["Link"] == '<https://stream.example.test/api/v1/snapshot/stream>; rel="stream"'


def test_the_stream_process_stops_promptly_with_streams_open(alice, tmp_path):
    make_prompt(alice)
    key = make_key(alice, "read")
    port = free_port()
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), STREAM_PORT=str(port))
    with stream_server(env, port, tmp_path / "stream.log") as stream:
        reader = SSEReader(stream, key)
        reader.next_event("snapshot")
        process = next(p for p in psutil.Process().children() if str(port) in " ".join(p.cmdline()))

        process.terminate()
        stopping = time.monotonic()
        process.wait(timeout=15)

        assert time.monotonic() - stopping < 10  # the run command's bar for every process
        assert reader.next() is None
        reader.close()


def test_the_link_keeps_the_requests_host_name_and_drops_its_port(settings):
    settings.STREAM_PORT = 9001

    assert stream_url("http", "api.internal:8000") == "http://api.internal:9001/api/v1/snapshot/stream"
    assert stream_url("https", "api.internal") == "https://api.internal:9001/api/v1/snapshot/stream"
    assert stream_url("http", "[::1]:8000") == "http://[::1]:9001/api/v1/snapshot/stream"


def test_without_redis_the_stream_serves_its_last_state_with_stale_keepalives(alice, tmp_path):
    make_prompt(alice)
    key = make_key(alice, "read")
    port, nothing_listens = free_port(), free_port()
    env = base_env(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=f"redis://127.0.0.1:{nothing_listens}/0",
        PROMPTRAMP_STREAM_KEEPALIVE_SECONDS="0.3",
    )
    with stream_server(env, port, tmp_path / "stream.log") as stream:
        reader = SSEReader(stream, key)

        snapshot = reader.next_event("snapshot")
        comments = [reader.next(comments=True) for _ in range(2)]
        reader.close()

    assert list(snapshot.data["prompts"]) == ["support.answer"]
    assert [(c.event, c.data) for c in comments if c] == [("", "stale"), ("", "stale")]
