import pytest
from django.db import DatabaseError, connection, transaction

from access.models import ApiKey
from audit.models import AuditEntry
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db
AUDIT = "/api/v1/audit"
ENTRY_FIELDS = {"id", "at", "actor", "via", "action", "prompt", "object_type", "object_id", "reason", "data"}


@pytest.fixture
def root_api(admin_user, client_with_key):
    return client_with_key(admin_user, "admin")


def test_an_admin_reads_the_audit_log_newest_first(root_api, alice):
    make_prompt(alice, name="support.answer", versions=2)

    response = root_api.get(AUDIT)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    newest = body["results"][0]
    assert set(newest) == ENTRY_FIELDS
    assert [e["action"] for e in body["results"]] == [
        "version.create",
        "label.move",
        "version.create",
        "prompt.create",
        "apikey.create",
    ]
    assert (newest["actor"], newest["prompt"], newest["data"]["version"]) == ("alice", "support.answer", 2)
    ids = [e["id"] for e in body["results"]]
    assert ids == sorted(ids, reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"prompt": "support.answer"}, {"prompt.create", "version.create", "label.move"}),
        ({"action": "version.create"}, {"version.create"}),
        ({"actor": "bob"}, {"prompt.create"}),
        ({"actor": "bob", "action": "label.move"}, set()),
    ],
)
def test_the_audit_log_filters_by_prompt_actor_and_action(root_api, alice, bob, query, expected):
    make_prompt(alice, name="support.answer", versions=2)
    make_prompt(bob, name="bob.prompt", versions=0)

    results = root_api.get(AUDIT, query).json()["results"]

    assert {e["action"] for e in results} == expected
    for key, value in query.items():
        assert {e["prompt" if key == "prompt" else key] for e in results} <= {value}


def test_the_audit_log_is_paginated(root_api, alice):
    for n in range(30):
        make_prompt(alice, name=f"p{n}", versions=1)

    first = root_api.get(AUDIT).json()
    second = root_api.get(AUDIT, {"page": 2}).json()

    assert first["count"] == AuditEntry.objects.count() > 50
    assert len(first["results"]) == 50
    assert {e["id"] for e in first["results"]}.isdisjoint({e["id"] for e in second["results"]})


@pytest.mark.parametrize("scopes", ["read", "write", "read,write,ingest"])
def test_only_admins_read_the_audit_log(client_with_key, alice, scopes):
    response = client_with_key(alice, scopes).get(AUDIT)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_audit_api_has_no_way_to_change_the_log(root_api, alice, method):
    make_prompt(alice, versions=1)
    before = list(AuditEntry.objects.values_list("id", "action", "reason"))

    response = getattr(root_api, method)(AUDIT, {"action": "forged", "reason": "x"})

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert list(AuditEntry.objects.values_list("id", "action", "reason")) == before


def test_the_database_refuses_to_edit_or_delete_an_audit_entry(alice):
    make_prompt(alice, versions=1)
    entry = AuditEntry.objects.first()
    before = (entry.reason, entry.actor_name)

    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET actor_name = 'mallory'")

    entry.refresh_from_db()
    assert (entry.reason, entry.actor_name) == before
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


# --- every mutation through the API is audited with its actor -------------------------------


def mutations(alice_api, root_api):
    """(expected action, request) for every kind of change the management API makes."""
    return [
        ("prompt.create", lambda: alice_api.post("/api/v1/prompts", {"name": "new.prompt"})),
        ("prompt.update", lambda: alice_api.patch("/api/v1/prompts/support.answer", {"description": "d"})),
        (
            "version.create",
            lambda: alice_api.post("/api/v1/prompts/support.answer/versions", {"template": "t2"}),
        ),
        (
            "label.move",
            lambda: alice_api.put("/api/v1/prompts/support.answer/labels/staging", {"version": 1}),
        ),
        ("label.delete", lambda: alice_api.delete("/api/v1/prompts/support.answer/labels/old")),
        ("apikey.create", lambda: root_api.post("/api/v1/keys", {"name": "k", "scopes": ["read"]})),
        ("apikey.revoke", lambda: root_api.delete(f"/api/v1/keys/{ApiKey.objects.get(name='victim').pk}")),
    ]


@pytest.mark.parametrize("index", range(7))
def test_every_mutation_leaves_an_audit_entry_with_its_actor_and_key(
    client_with_key, alice, admin_user, index
):
    make_prompt(alice, name="support.answer", versions=1)
    alice_api = client_with_key(alice, "write")
    root_api = client_with_key(admin_user, "admin")
    alice_api.put("/api/v1/prompts/support.answer/labels/old", {"version": 1})
    client_with_key(alice, "read")
    ApiKey.objects.filter(user=alice, scopes=["read"]).update(name="victim")
    action, mutate = mutations(alice_api, root_api)[index]
    last_id = AuditEntry.objects.order_by("-id").values_list("id", flat=True).first()

    response = mutate()

    assert response.status_code < 300, response.content
    entry = AuditEntry.objects.filter(id__gt=last_id, action=action).get()
    actor = "root" if action.startswith("apikey") else "alice"
    assert (entry.actor_name, entry.via) == (actor, "key:test")
    assert entry.actor.get_username() == actor
