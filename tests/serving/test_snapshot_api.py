from decimal import Decimal

import pytest

from rollouts.models import Rollout
from serving.state import serving_cache
from tests.factories import make_prompt
from tests.serving.helpers import put_rollout

pytestmark = pytest.mark.django_db
URL = "/api/v1/snapshot"


@pytest.fixture
def client(alice, client_with_key):
    return client_with_key(alice, "read")


def test_snapshot_holds_each_production_version_and_splitting_rollout(alice, client):
    make_prompt(alice, name="a.production", versions=2)
    split = make_prompt(alice, name="b.split", kind="chat", versions=2)
    rollout = put_rollout(split, percent=Decimal("12.5"), salt="custom")
    pending = make_prompt(alice, name="c.pending", versions=2)
    put_rollout(pending, percent="50", state=Rollout.State.PENDING)

    response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["generated_at"]
    assert sorted(body["prompts"]) == ["a.production", "b.split", "c.pending"]
    assert body["prompts"]["a.production"] == {
        "production": {
            "version": 1,
            "kind": "text",
            "template": "v1: Answer {{question}} for {{customer}}",
            "model": "gpt-4o-mini",
            "config": {"temperature": 0.2},
            "variables": ["question", "customer"],
        },
        "rollout": None,
    }
    assert body["prompts"]["c.pending"]["rollout"] is None
    split_rollout = body["prompts"]["b.split"]["rollout"]
    assert split_rollout["id"] == rollout.pk
    assert split_rollout["state"] == "running"
    assert split_rollout["percent"] == 12.5
    assert split_rollout["salt"] == "custom"
    assert split_rollout["baseline"]["version"] == 1 and split_rollout["candidate"]["version"] == 2
    assert split_rollout["candidate"]["messages"] == [{"role": "system", "content": "v2: help {{customer}}"}]


def test_snapshot_gives_the_default_salt(alice, client):
    rollout = put_rollout(make_prompt(alice, versions=2), percent="10", state=Rollout.State.PAUSED)

    split = client.get(URL).json()["prompts"]["support.answer"]["rollout"]

    assert split["salt"] == f"support.answer:{rollout.pk}" and split["state"] == "paused"


def test_matching_if_none_match_is_304(alice, client):
    make_prompt(alice, versions=1)
    first = client.get(URL)

    again = client.get(URL, HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == first["ETag"]


def test_etag_survives_a_rebuild_with_the_same_content_and_moves_with_new_content(alice, client):
    make_prompt(alice, versions=2)
    etag = client.get(URL)["ETag"]
    serving_cache.clear()
    assert client.get(URL, HTTP_IF_NONE_MATCH=etag).status_code == 304

    put_rollout(make_prompt(alice, name="other.prompt", versions=2), percent="10")
    serving_cache.clear()
    response = client.get(URL, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 200 and response["ETag"] != etag


def test_snapshot_needs_a_key(alice, client_with_key):
    from rest_framework.test import APIClient

    assert APIClient().get(URL).status_code == 401
    assert client_with_key(alice, "ingest").get(URL).status_code == 403
