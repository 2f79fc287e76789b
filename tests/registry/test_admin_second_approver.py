"""The second approver in the registry pages of the admin: set when a prompt is created and on
its own page (off only by a superuser), and the label and version forms refusing to move
`production` for the author of the version it would serve."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from registry.models import Label, Prompt, PromptVersion
from registry.services import prompt_create, version_create
from tests.factories import UserFactory, actor_for

pytestmark = pytest.mark.django_db
NAME = "support.answer"


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def guarded(alice: Any, bob: Any) -> Prompt:
    """support.answer requiring a second approver, owned by alice and bob; alice published v1
    (production) and v2."""
    prompt = prompt_create(actor=actor_for(alice), name=NAME, owners=["bob"], require_second_approver=True)
    for n in (1, 2):
        version_create(actor=actor_for(alice), prompt_name=NAME, template=f"v{n} {{{{question}}}}")
    return prompt


def production() -> int:
    return Label.objects.get(prompt__name=NAME, name="production").version.version


def flag() -> bool:
    return Prompt.objects.get(name=NAME).require_second_approver


def test_the_move_label_form_refuses_the_author_and_moves_production_for_another_owner(alice, bob):
    prompt = guarded(alice, bob)
    url = reverse("admin:registry_prompt_move_label", args=[prompt.pk])
    data = {"label": "production", "version": "2", "reason": "ship v2"}

    refused = logged_in(alice).post(url, data)

    assert refused.status_code == 403
    assert "v2 was published by alice, so someone other than alice must make v2 production" in (
        refused.content.decode()
    )
    assert production() == 1

    moved = logged_in(bob).post(url, data)

    assert moved.status_code == 302
    assert production() == 2
    entry = AuditEntry.objects.filter(action="label.move", object_id="production").latest("id")
    assert (entry.actor_name, entry.via, entry.reason) == ("bob", "admin", "ship v2")


def test_the_new_version_form_refuses_production_for_its_author_and_creates_nothing(alice, bob):
    prompt = guarded(alice, bob)
    url = reverse("admin:registry_prompt_new_version", args=[prompt.pk])

    refused = logged_in(alice).post(url, {"template": "v3 {{question}}", "labels": "production"})

    assert refused.status_code == 403
    assert "requires a second approver" in refused.content.decode()
    assert PromptVersion.objects.count() == 2
    assert production() == 1


def test_a_prompt_created_in_the_admin_may_require_a_second_approver(alice):
    response = logged_in(alice).post(
        reverse("admin:registry_prompt_add"), {"name": NAME, "kind": "text", "require_second_approver": "on"}
    )

    assert response.status_code == 302
    assert flag() is True
    page = logged_in(alice).get(reverse("admin:registry_prompt_change", args=[Prompt.objects.get().pk]))
    assert (
        "required: rollouts and production moves need someone other than the version" in page.content.decode()
    )


def test_an_owner_turns_it_on_from_the_prompt_page_and_only_a_superuser_turns_it_off(alice, bob):
    prompt = prompt_create(actor=actor_for(alice), name=NAME)
    page = reverse("admin:registry_prompt_change", args=[prompt.pk])
    url = reverse("admin:registry_prompt_second_approver", args=[prompt.pk])
    assert url in logged_in(alice).get(page).content.decode()

    turned_on = logged_in(alice).post(url, {"require_second_approver": "on"})
    assert turned_on.status_code == 302
    assert flag() is True

    refused = logged_in(alice).post(url, {})  # an unchecked box is not sent

    assert refused.status_code == 403
    assert "Only an admin" in refused.content.decode()
    assert flag() is True

    root = UserFactory(username="root", is_superuser=True)
    turned_off = logged_in(root).post(url, {})

    assert turned_off.status_code == 302
    assert flag() is False
    changes = [e.data["changes"] for e in AuditEntry.objects.filter(action="prompt.update").order_by("id")]
    assert changes == [
        {"require_second_approver": {"from": False, "to": True}},
        {"require_second_approver": {"from": True, "to": False}},
    ]


def test_someone_who_does_not_own_the_prompt_cannot_turn_it_on(alice, bob):
    prompt = prompt_create(actor=actor_for(alice), name=NAME)

    response = logged_in(bob).post(
        reverse("admin:registry_prompt_second_approver", args=[prompt.pk]), {"require_second_approver": "on"}
    )

    assert response.status_code == 403
    assert flag() is False
