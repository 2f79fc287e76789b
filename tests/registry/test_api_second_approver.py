"""The second approver in the registry API: `require_second_approver` shown and set on prompts
(off only by an admin), and `production` moved only by someone other than the version's author."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry.models import Label, Prompt, PromptVersion
from registry.services import prompt_create, prompt_update, version_create
from tests.factories import UserFactory, actor_for

pytestmark = pytest.mark.django_db
NAME = "support.answer"
PROMPT = f"/api/v1/prompts/{NAME}"


@pytest.fixture
def prompt(alice: Any, bob: Any) -> Prompt:
    """support.answer requiring a second approver, owned by alice and bob; alice published v1
    (production) and v2."""
    prompt = prompt_create(actor=actor_for(alice), name=NAME, owners=["bob"], require_second_approver=True)
    for n in (1, 2):
        version_create(actor=actor_for(alice), prompt_name=NAME, template=f"v{n} {{{{question}}}}")
    return prompt


def flag() -> bool:
    return Prompt.objects.get(name=NAME).require_second_approver


def labels() -> dict[str, int]:
    return dict(Label.objects.filter(prompt__name=NAME).values_list("name", "version__version"))


def session_of(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_a_prompt_is_created_requiring_a_second_approver_and_shows_it(client_with_key, alice):
    api = client_with_key(alice, "write")

    created = api.post("/api/v1/prompts", {"name": NAME, "require_second_approver": True})

    assert created.status_code == 201, created.json()
    assert created.json()["require_second_approver"] is True
    assert api.get(PROMPT).json()["require_second_approver"] is True
    assert AuditEntry.objects.get(action="prompt.create").data["require_second_approver"] is True


def test_an_owner_turns_it_on_but_not_off(client_with_key, alice):
    prompt_create(actor=actor_for(alice), name=NAME)
    api = client_with_key(alice, "write")

    on = api.patch(PROMPT, {"require_second_approver": True})
    assert (on.status_code, on.json()["require_second_approver"]) == (200, True)

    off = api.patch(PROMPT, {"require_second_approver": False, "description": "relaxed"})

    assert off.status_code == 403
    error = off.json()["error"]
    assert error["code"] == "admin_required"
    assert "Only an admin" in error["message"]
    assert flag() is True
    assert Prompt.objects.get(name=NAME).description == ""


def test_an_admin_key_turns_it_off_and_it_is_audited(client_with_key, alice, prompt):
    response = client_with_key(alice, "admin").patch(PROMPT, {"require_second_approver": False})

    assert (response.status_code, response.json()["require_second_approver"]) == (200, False)
    entry = AuditEntry.objects.filter(action="prompt.update").get()
    assert (entry.actor_name, entry.via) == ("alice", "key:test")
    assert entry.data == {"changes": {"require_second_approver": {"from": True, "to": False}}}


def test_a_superusers_session_turns_it_off_but_their_write_key_does_not(client_with_key, prompt):
    root = UserFactory(username="root", is_superuser=True)
    prompt_update(actor=actor_for(root), prompt_name=NAME, owners=["alice", "bob", "root"])

    refused = client_with_key(root, "write").patch(PROMPT, {"require_second_approver": False})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "admin_required")
    assert flag() is True

    done = session_of(root).patch(PROMPT, {"require_second_approver": False})
    assert done.status_code == 200, done.json()
    assert flag() is False


@pytest.mark.parametrize("value", ["no", 0, None, {}])
def test_the_flag_is_a_boolean(client_with_key, alice, prompt, value):
    response = client_with_key(alice, "admin").patch(PROMPT, {"require_second_approver": value})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert flag() is True


def test_the_author_cannot_move_production_and_another_owner_can(client_with_key, alice, bob, prompt):
    refused = client_with_key(alice, "write").put(f"{PROMPT}/labels/production", {"version": 2})

    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "second_approver_required"
    assert error["message"].startswith(
        "'support.answer' requires a second approver: v2 was published by alice"
    )
    assert error["details"] == {"prompt": NAME, "version": 2, "author": "alice"}
    assert labels() == {"production": 1}

    done = client_with_key(bob, "write").put(f"{PROMPT}/labels/production", {"version": 2, "reason": "ok"})

    assert done.status_code == 200, done.json()
    assert labels() == {"production": 2}


def test_an_admin_key_of_the_author_is_still_the_author(client_with_key, alice, prompt):
    response = client_with_key(alice, "admin").put(f"{PROMPT}/labels/production", {"version": 2})

    assert response.status_code == 403
    assert labels() == {"production": 1}


def test_a_new_version_with_production_is_refused_and_the_latest_content_is_approved(
    client_with_key, alice, bob, prompt
):
    body = {"template": "v3 {{question}}", "labels": ["production"]}

    refused = client_with_key(alice, "write").post(f"{PROMPT}/versions", body)

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "second_approver_required"
    assert list(PromptVersion.objects.order_by("version").values_list("version", flat=True)) == [1, 2]
    assert labels() == {"production": 1}

    approved = client_with_key(bob, "write").post(
        f"{PROMPT}/versions", {"template": "v2 {{question}}", "labels": ["production"]}
    )

    assert approved.status_code == 200, approved.json()
    assert (approved.json()["version"], approved.json()["labels"]) == (2, ["production"])
    assert labels() == {"production": 2}
