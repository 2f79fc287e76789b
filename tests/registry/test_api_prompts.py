import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.contrib.auth.models import Group

from audit.models import AuditEntry
from registry.models import Prompt
from rollouts.models import Rollout
from tests.factories import UserFactory, make_key, make_prompt

pytestmark = pytest.mark.django_db

PROMPT_FIELDS = {
    "name",
    "kind",
    "description",
    "tags",
    "owners",
    "labels",
    "latest_version",
    "require_second_approver",
    "created_at",
    "updated_at",
    "langfuse_mirror",
}


def test_creating_a_prompt_answers_201_with_the_payload_and_adds_the_creator_to_owners(
    client_with_key, alice, bob
):
    api = client_with_key(alice, "write")
    Group.objects.create(name="support")

    response = api.post(
        "/api/v1/prompts",
        {
            "name": "support.answer",
            "kind": "text",
            "description": "Answers customers",
            "tags": ["support", "email"],
            "owners": ["bob", "group:support"],
        },
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == PROMPT_FIELDS
    assert body["name"] == "support.answer"
    assert body["kind"] == "text"
    assert body["tags"] == ["email", "support"]
    assert body["owners"] == ["alice", "bob", "group:support"]
    assert body["labels"] == {}
    assert body["latest_version"] == 0
    assert body["require_second_approver"] is False


def test_creating_a_prompt_whose_name_is_taken_answers_409(client_with_key, alice):
    make_prompt(alice, name="support.answer")
    api = client_with_key(alice, "write")

    response = api.post("/api/v1/prompts", {"name": "support.answer"})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "prompt_exists"
    assert Prompt.objects.count() == 1


def test_the_prompt_list_is_paginated_by_name(client_with_key, alice):
    for n in range(55):
        make_prompt(alice, name=f"p{n:02d}", versions=0)
    api = client_with_key(alice, "read")

    first = api.get("/api/v1/prompts").json()
    second = api.get("/api/v1/prompts", {"page": 2}).json()

    assert first["count"] == 55
    assert [p["name"] for p in first["results"]][:2] == ["p00", "p01"]
    assert len(first["results"]) == 50
    assert first["previous"] is None and "page=2" in first["next"]
    assert [p["name"] for p in second["results"]] == [f"p{n}" for n in range(50, 55)]
    assert second["next"] is None


def test_the_prompt_list_filters_by_tag_owner_group_and_search(client_with_key, alice, bob):
    support = Group.objects.create(name="support")
    carol = UserFactory(username="carol")
    carol.groups.add(support)
    api = client_with_key(alice, "write")
    api.post("/api/v1/prompts", {"name": "support.answer", "tags": ["support"], "owners": ["group:support"]})
    api.post("/api/v1/prompts", {"name": "billing.refund", "description": "Refund Letters"})
    client_with_key(bob, "write").post("/api/v1/prompts", {"name": "bob.own", "tags": ["support"]})

    def names(**params):
        response = api.get("/api/v1/prompts", params)
        assert response.status_code == 200
        return [p["name"] for p in response.json()["results"]]

    assert names(tag="support") == ["bob.own", "support.answer"]
    assert names(owner="bob") == ["bob.own"]
    assert names(owner="alice") == ["billing.refund", "support.answer"]
    assert names(owner="carol") == ["support.answer"]
    assert names(owner="group:support") == ["support.answer"]
    assert names(search="refund letters") == ["billing.refund"]
    assert names(search="SUPPORT.") == ["support.answer"]
    assert names(tag="nothing") == []


def test_listing_thirty_prompts_takes_a_fixed_number_of_queries(
    client_with_key, alice, bob, django_assert_max_num_queries
):
    team = Group.objects.create(name="team")
    for n in range(30):
        prompt = make_prompt(alice, name=f"prompt{n:02d}", versions=2)
        prompt.owner_users.add(bob)
        prompt.owner_groups.add(team)
    api = client_with_key(alice, "read")
    api.get("/api/v1/prompts")  # warm the key cache

    with django_assert_max_num_queries(5):
        response = api.get("/api/v1/prompts")

    results = response.json()["results"]
    assert len(results) == 30
    assert results[0]["owners"] == ["alice", "bob", "group:team"]
    assert results[0]["labels"] == {"production": 1}


def test_getting_a_prompt_shows_its_labels_and_latest_version(client_with_key, alice):
    make_prompt(alice, name="support.answer", versions=3)
    api = client_with_key(alice, "write")
    api.put("/api/v1/prompts/support.answer/labels/staging", {"version": 3})

    body = api.get("/api/v1/prompts/support.answer").json()

    assert set(body) == PROMPT_FIELDS
    assert body["labels"] == {"production": 1, "staging": 3}
    assert body["latest_version"] == 3


def test_an_unknown_prompt_answers_404_in_the_error_shape(client_with_key, alice):
    response = client_with_key(alice, "read").get("/api/v1/prompts/nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "prompt_not_found"


@pytest.mark.parametrize(
    ("query", "expected_version"),
    [({"label": "production"}, 1), ({"label": "latest"}, 3), ({"version": "2"}, 2)],
)
def test_a_label_or_version_query_answers_that_version(client_with_key, alice, query, expected_version):
    make_prompt(alice, name="support.answer", versions=3)

    response = client_with_key(alice, "read").get("/api/v1/prompts/support.answer", query)

    assert response.status_code == 200
    body = response.json()
    assert body["version"] == expected_version
    assert body["template"].startswith(f"v{expected_version}:")
    assert "messages" not in body


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"label": "staging"}, 404, "label_not_found"),
        ({"version": "9"}, 404, "version_not_found"),
        ({"version": "0"}, 400, "validation_error"),
        ({"version": "-1"}, 400, "validation_error"),
        ({"version": "two"}, 400, "validation_error"),
        ({"version": "true"}, 400, "validation_error"),
        ({"version": "99999999999999999999"}, 400, "validation_error"),
        ({"version": "٣"}, 400, "validation_error"),
        ({"label": "Bad Label"}, 400, "validation_error"),
        ({"label": ""}, 400, "validation_error"),
        ({"label": "a\x00b"}, 400, "validation_error"),
        ({"label": "production", "version": "1"}, 400, "validation_error"),
    ],
)
def test_a_bad_label_or_version_query_answers_4xx(client_with_key, alice, query, status, code):
    make_prompt(alice, name="support.answer", versions=3)

    response = client_with_key(alice, "read").get("/api/v1/prompts/support.answer", query)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_latest_of_a_prompt_without_versions_answers_404(client_with_key, alice):
    make_prompt(alice, name="empty", versions=0)

    response = client_with_key(alice, "read").get("/api/v1/prompts/empty", {"label": "latest"})

    assert response.status_code == 404


def test_an_owner_changes_description_tags_and_owners_and_it_is_audited(client_with_key, alice, bob):
    make_prompt(alice, name="support.answer")
    api = client_with_key(alice, "write")

    response = api.patch(
        "/api/v1/prompts/support.answer",
        {"description": "new words", "tags": ["b", "a"], "owners": ["alice", "bob"]},
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["description"], body["tags"], body["owners"]) == ("new words", ["a", "b"], ["alice", "bob"])
    entry = AuditEntry.objects.get(action="prompt.update")
    assert entry.actor_name == "alice" and entry.via == "key:test"
    assert entry.data["changes"]["owners"] == {"from": ["alice"], "to": ["alice", "bob"]}
    assert entry.data["changes"]["tags"] == {"from": [], "to": ["a", "b"]}


def test_a_patch_that_changes_nothing_leaves_no_audit_entry(client_with_key, alice):
    make_prompt(alice, name="support.answer")

    response = client_with_key(alice, "write").patch("/api/v1/prompts/support.answer", {"owners": ["alice"]})

    assert response.status_code == 200
    assert not AuditEntry.objects.filter(action="prompt.update").exists()


def test_a_non_owner_cannot_change_a_prompt(client_with_key, alice, bob):
    make_prompt(alice, name="support.answer")

    response = client_with_key(bob, "write").patch("/api/v1/prompts/support.answer", {"owners": ["bob"]})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert list(Prompt.objects.get().owner_users.values_list("username", flat=True)) == ["alice"]


def test_an_admin_can_change_the_owners_of_any_prompt(client_with_key, alice, bob, admin_user):
    make_prompt(alice, name="support.answer")

    response = client_with_key(admin_user, "admin").patch(
        "/api/v1/prompts/support.answer", {"owners": ["bob"]}
    )

    assert response.status_code == 200
    assert response.json()["owners"] == ["bob"]


@pytest.mark.parametrize(
    "body",
    [
        {"owners": []},
        {"owners": ["nobody"]},
        {"owners": "alice"},
        {"tags": "support"},
        {"tags": [1]},
        {"description": None},
        {"description": ["x"]},
        {"kind": "chat"},
        {"name": "renamed"},
        [],
        "text",
    ],
)
def test_a_bad_patch_answers_400_and_changes_nothing(client_with_key, alice, body):
    make_prompt(alice, name="support.answer")

    response = client_with_key(alice, "write").patch("/api/v1/prompts/support.answer", body)

    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}
    prompt = Prompt.objects.get()
    assert (prompt.name, prompt.kind, prompt.description, prompt.tags) == ("support.answer", "text", "", [])
    assert list(prompt.owner_users.values_list("username", flat=True)) == ["alice"]


def test_a_prompt_with_an_active_rollout_still_answers_its_production_version(client_with_key, alice):
    prompt = make_prompt(alice, name="support.answer", versions=2)
    versions = {v.version: v for v in prompt.versions.all()}
    Rollout.objects.create(
        prompt=prompt, baseline=versions[1], candidate=versions[2], plan=[], gates=[], state="running"
    )

    response = client_with_key(alice, "read").get("/api/v1/prompts/support.answer", {"label": "production"})

    assert response.json()["version"] == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_name_give_one_prompt_and_409s(live_server, alice):
    headers = {"Authorization": f"Bearer {make_key(alice, 'write')}"}
    start = threading.Barrier(10)

    def create(_):
        with requests.Session() as session:
            start.wait()
            return session.post(
                f"{live_server.url}/api/v1/prompts", json={"name": "race"}, headers=headers, timeout=30
            )

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(r.status_code for r in pool.map(create, range(10)))

    assert statuses == [201] + [409] * 9
    assert Prompt.objects.filter(name="race").count() == 1
