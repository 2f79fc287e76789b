"""Scopes and ownership, seen through the registry API."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from registry.models import Label, PromptVersion
from tests.factories import UserFactory, make_prompt

pytestmark = pytest.mark.django_db
VERSIONS = "/api/v1/prompts/support.answer/versions"
NEW_VERSION = {"template": "Hello {{name}}"}


@pytest.fixture
def prompt(alice):
    return make_prompt(alice, name="support.answer", versions=1)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/prompts", {"name": "new.prompt"}),
        ("patch", "/api/v1/prompts/support.answer", {"description": "x"}),
        ("post", VERSIONS, NEW_VERSION),
        ("put", "/api/v1/prompts/support.answer/labels/staging", {"version": 1}),
        ("delete", "/api/v1/prompts/support.answer/labels/staging", None),
    ],
)
def test_a_read_key_cannot_write(client_with_key, alice, prompt, method, path, body):
    response = getattr(client_with_key(alice, "read"), method)(path, body)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert PromptVersion.objects.count() == 1


@pytest.mark.parametrize("path", ["/api/v1/prompts", "/api/v1/prompts/support.answer", VERSIONS])
def test_an_ingest_only_key_cannot_read_the_registry(client_with_key, alice, prompt, path):
    assert client_with_key(alice, "ingest").get(path).status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", VERSIONS, NEW_VERSION),
        ("put", "/api/v1/prompts/support.answer/labels/production", {"version": 1}),
        ("delete", "/api/v1/prompts/support.answer/labels/production", None),
        ("patch", "/api/v1/prompts/support.answer", {"owners": ["bob"]}),
    ],
)
def test_a_write_key_of_a_non_owner_cannot_change_someone_elses_prompt(
    client_with_key, bob, prompt, method, path, body
):
    response = getattr(client_with_key(bob, "write"), method)(path, body)

    assert response.status_code == 403
    assert PromptVersion.objects.count() == 1
    assert list(Label.objects.values_list("name", flat=True)) == ["production"]


def test_a_write_key_creates_prompts_that_its_user_then_owns(client_with_key, bob):
    api = client_with_key(bob, "write")

    created = api.post("/api/v1/prompts", {"name": "bob.prompt"})
    published = api.post("/api/v1/prompts/bob.prompt/versions", NEW_VERSION)

    assert created.status_code == 201 and created.json()["owners"] == ["bob"]
    assert published.status_code == 201


def test_members_of_an_owning_group_may_publish(client_with_key, alice, prompt):
    support = Group.objects.create(name="support")
    carol = UserFactory(username="carol")
    carol.groups.add(support)
    client_with_key(alice, "write").patch("/api/v1/prompts/support.answer", {"owners": ["group:support"]})

    by_member = client_with_key(carol, "write").post(VERSIONS, NEW_VERSION)
    by_former_owner = client_with_key(alice, "write").post(VERSIONS, {"template": "other"})

    assert by_member.status_code == 201
    assert by_member.json()["author"] == "carol"
    assert by_former_owner.status_code == 403


def test_an_admin_key_may_publish_to_any_prompt(client_with_key, admin_user, prompt):
    response = client_with_key(admin_user, "admin").post(VERSIONS, NEW_VERSION)

    assert response.status_code == 201


def test_a_staff_session_reads_and_writes_but_is_not_admin(client, alice, prompt):
    client.force_login(alice)

    listed = client.get("/api/v1/prompts")
    audit = client.get("/api/v1/audit")

    assert listed.status_code == 200
    assert audit.status_code == 403


def test_a_superuser_session_is_admin(client, admin_user, prompt):
    client.force_login(admin_user)

    assert client.get("/api/v1/audit").status_code == 200
    assert client.get("/api/v1/keys").status_code == 200


def test_a_session_write_needs_the_csrf_token(alice, prompt):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(VERSIONS, NEW_VERSION, content_type="application/json")

    assert response.status_code == 403
    assert PromptVersion.objects.count() == 1
