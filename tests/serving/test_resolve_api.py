import time

import pytest
from rest_framework.test import APIClient

from core import state_cache
from core.actors import Actor
from registry.services import label_move, prompt_create
from rollouts.models import Rollout
from serving.bucketing import bucket_of
from serving.state import serving_cache
from tests.factories import actor_for, make_key, make_prompt
from tests.serving.clients import django_get, fast_get
from tests.serving.helpers import put_rollout, set_rollout
from tests.serving.vectors import bucketing_vectors

pytestmark = pytest.mark.django_db
URL = "/api/v1/prompts/support.answer/resolve"


@pytest.fixture(params=["django_view", "wsgi_short_way"])
def get(request):
    return {"django_view": django_get, "wsgi_short_way": fast_get}[request.param]


@pytest.fixture
def key(alice):
    return make_key(alice, "read")


def test_without_rollout_production_is_served(alice, key, get):
    make_prompt(alice, versions=2)

    response = get(f"{URL}?unit=user-1", key=key)

    assert response.status_code == 200
    assert response.json() == {
        "name": "support.answer",
        "version": 1,
        "kind": "text",
        "template": "v1: Answer {{question}} for {{customer}}",
        "model": "gpt-4o-mini",
        "config": {"temperature": 0.2},
        "variables": ["question", "customer"],
        "arm": "production",
        "rollout_id": None,
        "bucket": None,
        "sticky": True,
    }
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "private, no-cache"
    assert response["ETag"].startswith('"')
    assert "X-Promptramp-Stale" not in response


def test_chat_prompt_is_served_with_messages(alice, key, get):
    make_prompt(alice, name="chat.helper", kind="chat", versions=1)

    body = get("/api/v1/prompts/chat.helper/resolve?unit=u", key=key).json()

    assert body["kind"] == "chat" and "template" not in body
    assert body["messages"] == [{"role": "system", "content": "v1: help {{customer}}"}]
    assert body["variables"] == ["customer"]


def test_running_rollout_puts_the_unit_in_its_hashed_bucket(alice, key, get):
    prompt = make_prompt(alice, versions=2)
    rollout = put_rollout(prompt, percent="50", salt="answer:1")

    baseline = get(f"{URL}?unit=user-1", key=key).json()  # bucket 6681 (tests/data/bucketing_vectors.json)
    candidate = get(f"{URL}?unit=user-2", key=key).json()  # bucket 6405 … see below
    assert baseline["bucket"] == 6681 and baseline["arm"] == "baseline" and baseline["version"] == 1
    assert candidate["bucket"] == 6405 and candidate["arm"] == "baseline"
    low = get(f"{URL}?unit=tenant/acme", key=key).json()  # bucket 168
    assert low["bucket"] == 168 and low["arm"] == "candidate" and low["version"] == 2
    assert low["rollout_id"] == rollout.pk and low["sticky"] is True


def test_server_reproduces_every_bucketing_vector(alice, key, get):
    by_salt: dict[str, list[dict]] = {}
    for vector in bucketing_vectors():
        by_salt.setdefault(vector["salt"], []).append(vector)
    names = {salt: f"vectors.p{index}" for index, salt in enumerate(sorted(by_salt))}
    for salt, name in names.items():
        put_rollout(make_prompt(alice, name=name, versions=2), percent="37.5", salt=salt)
    for salt, vectors in by_salt.items():
        name = names[salt]
        for vector in vectors:
            if not vector["unit"]:
                continue  # no unit means a random bucket; checked below
            response = get(f"/api/v1/prompts/{name}/resolve?unit={_quote(vector['unit'])}", key=key)
            body = response.json()
            assert body["bucket"] == vector["bucket"], vector
            assert body["arm"] == ("candidate" if vector["bucket"] < 3750 else "baseline")


def test_default_salt_is_prompt_name_and_rollout_id(alice, key, get):
    prompt = make_prompt(alice, versions=2)
    rollout = put_rollout(prompt, percent="10")

    body = get(f"{URL}?unit=someone", key=key).json()

    assert body["bucket"] == bucket_of(f"support.answer:{rollout.pk}", "someone")


@pytest.mark.parametrize("query", ["", "?unit=", "?other=1"])
def test_without_a_unit_the_bucket_is_random_and_not_sticky(alice, key, get, query):
    prompt = make_prompt(alice, versions=2)
    put_rollout(prompt, percent="50")

    bodies = [get(f"{URL}{query}", key=key).json() for _ in range(40)]

    assert all(body["sticky"] is False for body in bodies)
    assert all(0 <= body["bucket"] < 10_000 for body in bodies)
    assert all((body["arm"] == "candidate") == (body["bucket"] < 5000) for body in bodies)
    assert len({body["bucket"] for body in bodies}) > 30
    assert {body["arm"] for body in bodies} == {"baseline", "candidate"}


def test_without_a_unit_production_is_not_sticky(alice, key, get):
    make_prompt(alice, versions=1)

    body = get(URL, key=key).json()

    assert body["arm"] == "production" and body["sticky"] is False and body["bucket"] is None


def test_pending_rollout_serves_production(alice, key, get):
    prompt = make_prompt(alice, versions=2)
    put_rollout(prompt, percent="100", state=Rollout.State.PENDING)

    body = get(f"{URL}?unit=user-1", key=key).json()

    assert body["arm"] == "production" and body["version"] == 1 and body["rollout_id"] is None


def test_paused_rollout_keeps_its_split(alice, key, get):
    prompt = make_prompt(alice, versions=2)
    rollout = put_rollout(prompt, percent="100", state=Rollout.State.PAUSED)

    body = get(f"{URL}?unit=user-1", key=key).json()

    assert body["arm"] == "candidate" and body["version"] == 2 and body["rollout_id"] == rollout.pk


@pytest.mark.parametrize("state", [Rollout.State.SUCCEEDED, Rollout.State.ROLLED_BACK, Rollout.State.ABORTED])
def test_ended_rollout_serves_production(alice, key, get, state):
    prompt = make_prompt(alice, versions=2)
    put_rollout(prompt, percent="100", state=state)

    assert get(f"{URL}?unit=user-1", key=key).json()["arm"] == "production"


def test_unknown_prompt_is_404_prompt_not_found(alice, key, get):
    response = get("/api/v1/prompts/nobody.knows/resolve?unit=u", key=key)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "prompt_not_found"


def test_prompt_without_versions_is_404_no_production(alice, key, get):
    prompt_create(actor=actor_for(alice), name="empty.prompt", owners=["alice"])
    state_cache.state_changed("serving")

    response = get("/api/v1/prompts/empty.prompt/resolve?unit=u", key=key)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_production"


def test_unit_longer_than_512_characters_is_400(alice, key, get):
    make_prompt(alice, versions=1)

    response = get(f"{URL}?unit={'x' * 513}", key=key)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert get(f"{URL}?unit={'x' * 512}", key=key).status_code == 200


def test_matching_if_none_match_is_304_with_the_same_etag(alice, key, get):
    prompt = make_prompt(alice, versions=2)
    put_rollout(prompt, percent="50")
    etag = get(f"{URL}?unit=user-1", key=key)["ETag"]

    again = get(f"{URL}?unit=user-1", key=key, headers={"If-None-Match": etag})
    other_unit = get(f"{URL}?unit=user-2", key=key, headers={"If-None-Match": etag})

    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert again["Cache-Control"] == "private, no-cache"
    assert other_unit.status_code in (200, 304)
    assert (other_unit.status_code == 304) == (other_unit["ETag"] == etag)


def test_etag_changes_when_the_served_version_changes(alice, key, get):
    make_prompt(alice, versions=2)
    etag = get(f"{URL}?unit=user-1", key=key)["ETag"]
    label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=2)
    serving_cache.clear()

    response = get(f"{URL}?unit=user-1", key=key, headers={"If-None-Match": etag})

    assert response.status_code == 200 and response.json()["version"] == 2
    assert response["ETag"] != etag


def test_unknown_key_is_401(alice, get):
    make_prompt(alice, versions=1)

    response = get(f"{URL}?unit=u", key="pr_not-a-key")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_key_without_read_scope_is_403(alice, get):
    make_prompt(alice, versions=1)

    response = get(f"{URL}?unit=u", key=make_key(alice, "ingest"))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_write_key_may_resolve(alice, get):
    make_prompt(alice, versions=1)

    assert get(f"{URL}?unit=u", key=make_key(alice, "write")).status_code == 200


def test_without_credentials_is_401(alice, client):
    make_prompt(alice, versions=1)

    response = client.get(f"{URL}?unit=u")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_admin_session_may_resolve(alice, admin_user, client):
    make_prompt(alice, versions=1)
    client.force_login(admin_user)

    response = client.get(f"{URL}?unit=u")

    assert response.status_code == 200 and response.json()["version"] == 1


def test_post_to_resolve_is_405(alice):
    make_prompt(alice, versions=1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(alice, 'write')}")

    response = client.post(f"{URL}?unit=u", {}, format="json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_cached_resolve_queries_no_database(alice, key, get, django_assert_num_queries):
    prompt = make_prompt(alice, versions=2)
    put_rollout(prompt, percent="50")
    get(f"{URL}?unit=warm-up", key=key)

    with django_assert_num_queries(0):
        for unit in ("a", "b", "c", ""):
            assert get(f"{URL}?unit={unit}", key=key).status_code == 200


def test_label_move_is_served_after_the_next_check(alice, key, get):
    make_prompt(alice, versions=2)
    assert get(f"{URL}?unit=u", key=key).json()["version"] == 1

    label_move(actor=actor_for(alice), prompt_name="support.answer", label="production", version=2)
    time.sleep(state_cache.CHECK_SECONDS + 0.05)

    assert get(f"{URL}?unit=u", key=key).json()["version"] == 2


def test_rollout_changes_are_served_after_the_next_check(alice, key, get):
    prompt = make_prompt(alice, versions=2)
    rollout = put_rollout(prompt, percent="0")
    assert get(f"{URL}?unit=u", key=key).json()["arm"] == "baseline"

    set_rollout(rollout, percent=100)
    time.sleep(state_cache.CHECK_SECONDS + 0.05)
    assert get(f"{URL}?unit=u", key=key).json()["arm"] == "candidate"

    set_rollout(rollout, state=Rollout.State.ROLLED_BACK)
    time.sleep(state_cache.CHECK_SECONDS + 0.05)
    assert get(f"{URL}?unit=u", key=key).json()["arm"] == "production"


def test_revoked_key_stops_working_within_a_second(alice, get):
    from access.models import ApiKey
    from access.services import apikey_revoke

    make_prompt(alice, versions=1)
    raw = make_key(alice, "read")
    assert get(f"{URL}?unit=u", key=raw).status_code == 200

    apikey_revoke(actor=Actor.system(), key_id=ApiKey.objects.latest("created_at").pk)
    time.sleep(state_cache.CHECK_SECONDS + 0.05)

    assert get(f"{URL}?unit=u", key=raw).status_code == 401


def _quote(unit: str) -> str:
    from urllib.parse import quote

    return quote(unit, safe="")
