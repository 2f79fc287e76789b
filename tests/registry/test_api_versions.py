import difflib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from audit.models import AuditEntry
from registry.models import PromptVersion
from rollouts.models import Rollout
from tests.factories import make_key, make_prompt

VERSION_FIELDS = {
    "prompt",
    "version",
    "model",
    "config",
    "variables",
    "author",
    "message",
    "content_hash",
    "git_commit",
    "git_tag",
    "labels",
    "created_at",
}
URL = "/api/v1/prompts/support.answer/versions"
BASE = {
    "template": "Answer {{question}} for {{customer}}",
    "model": "gpt-4o-mini",
    "config": {"temperature": 0.2},
}


@pytest.fixture
def alice_api(alice, client_with_key):
    make_prompt(alice, name="support.answer", versions=0)
    return client_with_key(alice, "write")


@pytest.mark.django_db
def test_publishing_a_version_answers_201_with_the_version_payload(alice_api):
    response = alice_api.post(
        URL,
        {
            **BASE,
            "message": "tighter tone",
            "git_commit": "0123abcd",
            "git_tag": "v1.0",
            "labels": ["staging"],
        },
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == VERSION_FIELDS | {"template"}
    assert body["version"] == 1
    assert body["template"] == BASE["template"]
    assert body["variables"] == ["question", "customer"]
    assert body["author"] == "alice"
    assert (body["message"], body["git_commit"], body["git_tag"]) == ("tighter tone", "0123abcd", "v1.0")
    assert body["labels"] == ["production", "staging"]
    assert len(body["content_hash"]) == 64


@pytest.mark.django_db
def test_a_chat_version_carries_messages_and_no_template(alice, client_with_key):
    make_prompt(alice, name="support.chat", kind="chat", versions=0)
    messages = [
        {"role": "system", "content": "Be kind to {{customer}}"},
        {"role": "user", "content": "{{q}}"},
    ]

    response = client_with_key(alice, "write").post(
        "/api/v1/prompts/support.chat/versions", {"messages": messages, "model": "gpt-4o"}
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["messages"] == messages
    assert "template" not in body
    assert body["variables"] == ["customer", "q"]


@pytest.mark.django_db
def test_publishing_the_latest_content_again_answers_200_with_the_latest_and_applies_labels(alice_api):
    first = alice_api.post(URL, {**BASE, "message": "first"}).json()

    again = alice_api.post(URL, {**BASE, "message": "same again", "labels": ["staging"]})

    assert again.status_code == 200
    body = again.json()
    assert body["version"] == first["version"] == 1
    assert body["message"] == "first"
    assert body["labels"] == ["production", "staging"]
    assert PromptVersion.objects.count() == 1
    moves = AuditEntry.objects.filter(action="label.move", object_id="staging")
    assert moves.count() == 1


@pytest.mark.django_db
def test_a_label_asked_for_twice_is_moved_and_audited_once(alice_api):
    response = alice_api.post(URL, {**BASE, "labels": ["staging", "staging"]})

    assert response.json()["labels"] == ["production", "staging"]
    assert AuditEntry.objects.filter(action="label.move", object_id="staging").count() == 1


@pytest.mark.django_db
def test_config_key_order_is_not_a_change_but_config_and_model_changes_are(alice_api):
    alice_api.post(URL, {**BASE, "config": {"temperature": 0.2, "max_tokens": 100}})

    reordered = alice_api.post(URL, {**BASE, "config": {"max_tokens": 100, "temperature": 0.2}})
    new_config = alice_api.post(URL, {**BASE, "config": {"max_tokens": 100, "temperature": 0.3}})
    new_model = alice_api.post(
        URL, {**BASE, "model": "gpt-4o", "config": {"max_tokens": 100, "temperature": 0.3}}
    )

    assert (reordered.status_code, reordered.json()["version"]) == (200, 1)
    assert (new_config.status_code, new_config.json()["version"]) == (201, 2)
    assert (new_model.status_code, new_model.json()["version"]) == (201, 3)


@pytest.mark.django_db
def test_content_equal_to_an_older_version_but_not_the_latest_is_a_new_version(alice_api):
    alice_api.post(URL, BASE)
    alice_api.post(URL, {**BASE, "template": "other"})

    response = alice_api.post(URL, BASE)

    assert (response.status_code, response.json()["version"]) == (201, 3)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_version_cannot_be_changed_or_deleted_through_the_api(alice_api, method):
    alice_api.post(URL, BASE)

    response = getattr(alice_api, method)(f"{URL}/1", {"template": "changed"})

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert PromptVersion.objects.get().template == BASE["template"]


@pytest.mark.django_db
def test_versions_are_listed_newest_first_and_fetched_one_by_one(alice_api):
    for n in range(3):
        alice_api.post(URL, {**BASE, "template": f"t{n}"})

    listed = alice_api.get(URL).json()
    one = alice_api.get(f"{URL}/2")
    missing = alice_api.get(f"{URL}/4")

    assert [v["version"] for v in listed["results"]] == [3, 2, 1]
    assert listed["results"][2]["labels"] == ["production"]
    assert one.json()["template"] == "t1"
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "version_not_found")


@pytest.mark.django_db
def test_asking_for_production_while_a_rollout_is_active_answers_409_and_creates_nothing(alice, alice_api):
    alice_api.post(URL, BASE)
    alice_api.post(URL, {**BASE, "template": "second"})
    prompt = alice.owned_prompts.get()
    v1, v2 = prompt.versions.order_by("version")
    Rollout.objects.create(prompt=prompt, baseline=v1, candidate=v2, plan=[], gates=[], state="running")

    response = alice_api.post(URL, {**BASE, "template": "third", "labels": ["production"]})

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "production_frozen"
    assert PromptVersion.objects.count() == 2
    assert prompt.labels.get(name="production").version == v1


@pytest.mark.django_db
def test_the_diff_shows_content_and_config_changes_between_two_versions(alice_api):
    alice_api.post(URL, {**BASE, "template": "Hello {{name}}\nBye\n"})
    alice_api.post(
        URL, {**BASE, "template": "Hello {{name}}!\nBye\n", "config": {"temperature": 0.5}, "model": "o1"}
    )

    response = alice_api.get(f"{URL}/2/diff", {"against": 1})

    assert response.status_code == 200
    body = response.json()
    assert (body["from_version"], body["to_version"]) == (1, 2)
    assert body["content_diff"] == "".join(
        difflib.unified_diff(["Hello {{name}}\n", "Bye\n"], ["Hello {{name}}!\n", "Bye\n"], "v1", "v2")
    )
    assert body["content_diff"].startswith(
        "--- v1\n+++ v2\n@@ -1,2 +1,2 @@\n-Hello {{name}}\n+Hello {{name}}!\n"
    )
    assert '-  "temperature": 0.2\n+  "temperature": 0.5\n' in body["config_diff"]
    assert body["model_changed"] is True
    assert (body["from_model"], body["to_model"]) == ("gpt-4o-mini", "o1")
    assert body["identical"] is False
    assert body["line_diff"] is False


@pytest.mark.django_db
def test_the_diff_defaults_to_the_version_before(alice_api):
    alice_api.post(URL, BASE)
    alice_api.post(URL, {**BASE, "template": "other"})

    body = alice_api.get(f"{URL}/2/diff").json()

    assert (body["from_version"], body["to_version"]) == (1, 2)
    assert body["config_diff"] == "" and body["model_changed"] is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("1/diff", {}, 400),
        ("2/diff", {"against": "0"}, 400),
        ("2/diff", {"against": "x"}, 400),
        ("2/diff", {"against": "7"}, 404),
        ("7/diff", {"against": "1"}, 404),
    ],
)
def test_a_bad_diff_request_answers_4xx(alice_api, path, query, status):
    alice_api.post(URL, BASE)
    alice_api.post(URL, {**BASE, "template": "other"})

    response = alice_api.get(f"{URL}/{path}", query)

    assert response.status_code == status
    assert "error" in response.json()


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_publishes_get_versions_one_to_twenty(live_server, alice):
    make_prompt(alice, name="support.answer", versions=0)
    headers = {"Authorization": f"Bearer {make_key(alice, 'write')}"}
    start = threading.Barrier(20)

    def publish(n):
        with requests.Session() as session:
            start.wait()
            return session.post(
                f"{live_server.url}{URL}",
                json={**BASE, "template": f"variant {n}"},
                headers=headers,
                timeout=30,
            )

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(publish, range(20)))

    assert [r.status_code for r in responses] == [201] * 20, [
        r.text for r in responses if r.status_code != 201
    ]
    numbers = sorted(r.json()["version"] for r in responses)
    assert numbers == list(range(1, 21))
    stored = PromptVersion.objects.filter(prompt__name="support.answer")
    assert sorted(stored.values_list("version", flat=True)) == list(range(1, 21))
    assert {r.json()["template"] for r in responses} == {f"variant {n}" for n in range(20)}
