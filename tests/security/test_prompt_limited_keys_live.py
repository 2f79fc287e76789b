"""A key limited to prompts, from the attacker's side, on the paths served before Django or by
the stream process: a live web server (the resolve fast path, the snapshot) and a live stream
process, with a Bearer key limited to ``support.*`` asking about ``billing.invoice``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from access.models import ApiKey
from access.services import apikey_create
from core.actors import Actor
from registry.services import label_move
from tests.factories import actor_for, make_prompt
from tests.servers import http_get, wait_for
from tests.serving.stream_helpers import Service, SSEReader, service

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def live(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Service]:
    with service(tmp_path_factory.mktemp("limited")) as s:
        yield s


def _support_key(user) -> str:  # type: ignore[no-untyped-def]
    _, raw = apikey_create(
        actor=Actor.system(), name="support", user=user, scopes=["read"], prompts=["support.*"]
    )
    return raw


def _prompts(alice, bob) -> None:  # type: ignore[no-untyped-def]
    make_prompt(alice, name="support.answer", versions=2)
    make_prompt(bob, name="billing.invoice", versions=2)


def test_resolve_on_the_fast_path_refuses_another_prompt_with_403(live, alice, bob):
    _prompts(alice, bob)
    key = _support_key(alice)

    refused = http_get(f"{live.web}/api/v1/prompts/billing.invoice/resolve?unit=u1", key=key)
    allowed = http_get(f"{live.web}/api/v1/prompts/support.answer/resolve?unit=u1", key=key)

    assert refused.status == 403
    assert refused.body["error"]["code"] == "prompt_not_allowed"
    assert "template" not in refused.body
    assert allowed.status == 200 and allowed.body["name"] == "support.answer"


def test_the_snapshot_holds_only_the_keys_prompts_with_its_own_etag(live, alice, bob):
    _prompts(alice, bob)
    key = _support_key(alice)

    limited = http_get(f"{live.web}/api/v1/snapshot", key=key)
    _, admin_key = apikey_create(actor=Actor.system(), name="all", user=alice, scopes=["read"])
    everything = http_get(f"{live.web}/api/v1/snapshot", key=admin_key)

    assert list(limited.body["prompts"]) == ["support.answer"]
    assert sorted(everything.body["prompts"]) == ["billing.invoice", "support.answer"]
    assert limited.headers["ETag"] != everything.headers["ETag"]
    request = urllib.request.Request(
        f"{live.web}/api/v1/snapshot",
        headers={"Authorization": f"Bearer {key}", "If-None-Match": limited.headers["ETag"]},
    )
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(request, timeout=5)
    assert not_modified.value.code == 304


def test_the_stream_sends_a_limited_key_only_its_prompts_and_their_changes(live, alice, bob):
    _prompts(alice, bob)
    reader = SSEReader(live.stream, _support_key(alice))
    try:
        snapshot = reader.next_event("snapshot")
        assert list(snapshot.data["prompts"]) == ["support.answer"]

        label_move(actor=actor_for(bob), prompt_name="billing.invoice", label="production", version=2)
        label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=2)

        change = reader.next_event("change")
        assert list(change.data["prompts"]) == ["support.answer"]
        assert "billing.invoice" not in json.dumps(change.data)
    finally:
        reader.close()


def test_a_stream_whose_key_is_narrowed_ends_within_a_second(live, alice, bob):
    _prompts(alice, bob)
    _, raw = apikey_create(actor=Actor.system(), name="wide", user=alice, scopes=["read"], prompts=["s*"])
    reader = SSEReader(live.stream, raw)
    try:
        reader.next_event("snapshot")
        key = ApiKey.objects.get(name="wide")
        key.prompts = ["support.answer"]
        key.save()
        narrowed_at = time.monotonic()

        assert reader.next() is None  # the server ended the stream
        assert time.monotonic() - narrowed_at < 1.0
    finally:
        reader.close()


def test_a_key_narrowed_in_a_shell_is_refused_by_every_web_process_within_a_second(live, alice, bob):
    _prompts(alice, bob)
    _, raw = apikey_create(actor=Actor.system(), name="wide", user=alice, scopes=["read"])
    resolve = f"{live.web}/api/v1/prompts/billing.invoice/resolve?unit=u1"
    assert all(http_get(resolve, key=raw).status == 200 for _ in range(10))

    key = ApiKey.objects.get(name="wide")
    key.prompts = ["support.*"]
    key.save()

    took = wait_for(lambda: all(http_get(resolve, key=raw).status == 403 for _ in range(10)), seconds=2)
    assert took < 1.0
    assert all(http_get(resolve, key=raw).status == 403 for _ in range(20))
