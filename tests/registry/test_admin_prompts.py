"""The prompt pages of the admin: list, read-only page, creation through prompt_create."""

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from core.actors import Actor
from registry.models import Prompt
from registry.services import prompt_create
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db


def logged_in(user, *, enforce_csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


def test_prompt_list_shows_kind_tags_owners_production_and_latest(alice):
    make_prompt(alice, name="support.answer", versions=2)
    prompt_create(actor=Actor.system(), name="sales.pitch", tags=["sales", "email"], owners=["alice"])

    response = logged_in(alice).get(reverse("admin:registry_prompt_changelist"))

    assert response.status_code == 200
    assert sorted(p.name for p in response.context["cl"].result_list) == ["sales.pitch", "support.answer"]
    html = response.content.decode()
    assert '<td class="field-production">v1</td>' in html
    assert '<td class="field-latest">v2</td>' in html
    assert '<td class="field-tag_list">email, sales</td>' in html
    assert '<td class="field-owner_list">alice</td>' in html


def test_prompt_list_filters_by_tag_and_searches_by_name(alice):
    prompt_create(actor=Actor.system(), name="sales.pitch", tags=["sales"])
    prompt_create(actor=Actor.system(), name="support.answer", tags=["support"])
    client = logged_in(alice)

    by_tag = client.get(reverse("admin:registry_prompt_changelist"), {"tag": "support"})
    by_search = client.get(reverse("admin:registry_prompt_changelist"), {"q": "sales"})

    assert [p.name for p in by_tag.context["cl"].result_list] == ["support.answer"]
    assert [p.name for p in by_search.context["cl"].result_list] == ["sales.pitch"]


def test_prompt_page_shows_owners_labels_and_versions_without_anything_to_edit(alice):
    prompt = make_prompt(alice, versions=2)

    response = logged_in(alice).get(reverse("admin:registry_prompt_change", args=[prompt.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "alice" in html
    assert 'name="name"' not in html and 'name="_save"' not in html
    labels = response.context["inline_admin_formsets"][0]
    versions = response.context["inline_admin_formsets"][1]
    assert [form.original.name for form in labels] == ["production"]
    assert [form.original.version for form in versions] == [2, 1]
    assert reverse("admin:registry_prompt_new_version", args=[prompt.pk]) in html
    assert reverse("admin:registry_prompt_diff", args=[prompt.pk]) in html


def test_staff_who_do_not_own_a_prompt_see_it_without_publish_buttons(alice, bob):
    prompt = make_prompt(alice)

    response = logged_in(bob).get(reverse("admin:registry_prompt_change", args=[prompt.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("admin:registry_prompt_new_version", args=[prompt.pk]) not in html
    assert "Only the owners of this prompt (alice) or an admin" in html


def test_creating_a_prompt_goes_through_prompt_create_with_the_creator_as_owner(alice, bob):
    client = logged_in(alice)

    response = client.post(
        reverse("admin:registry_prompt_add"),
        {
            "name": "support.answer",
            "kind": "chat",
            "description": "Answers",
            "tags": "support, email",
            "owners": "bob",
        },
    )

    prompt = Prompt.objects.get(name="support.answer")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:registry_prompt_new_version", args=[prompt.pk])
    assert prompt.kind == "chat" and prompt.tags == ["email", "support"]
    assert sorted(prompt.owner_users.values_list("username", flat=True)) == ["alice", "bob"]
    entry = AuditEntry.objects.get(action="prompt.create")
    assert (entry.actor_name, entry.via, entry.prompt_name) == ("alice", "admin", "support.answer")


def test_creating_a_prompt_with_an_unknown_owner_shows_the_error_and_creates_nothing(alice):
    response = logged_in(alice).post(
        reverse("admin:registry_prompt_add"), {"name": "support.answer", "kind": "text", "owners": "carol"}
    )

    assert response.status_code == 400
    assert "Unknown owners." in response.content.decode() and "carol" in response.content.decode()
    assert not Prompt.objects.exists()


def test_creating_a_prompt_whose_name_exists_shows_the_conflict(alice):
    make_prompt(alice, name="support.answer")

    response = logged_in(alice).post(
        reverse("admin:registry_prompt_add"), {"name": "support.answer", "kind": "text"}
    )

    assert response.status_code == 409
    assert "Prompt &#x27;support.answer&#x27; already exists." in response.content.decode()


def test_nobody_can_delete_a_prompt_from_the_admin(admin_user, alice):
    prompt = make_prompt(alice)
    client = logged_in(admin_user)

    page = client.get(reverse("admin:registry_prompt_delete", args=[prompt.pk]))
    posted = client.post(reverse("admin:registry_prompt_delete", args=[prompt.pk]), {"post": "yes"})
    listing = client.get(reverse("admin:registry_prompt_changelist"))

    assert page.status_code == 403 and posted.status_code == 403
    assert "delete_selected" not in listing.content.decode()
    assert Prompt.objects.filter(pk=prompt.pk).exists()


def test_admin_pages_refuse_a_post_without_csrf_token(alice):
    prompt = make_prompt(alice)
    client = logged_in(alice, enforce_csrf=True)
    posts = {
        reverse("admin:registry_prompt_add"): {"name": "other", "kind": "text"},
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]): {"template": "changed {{x}}"},
        reverse("admin:registry_prompt_move_label", args=[prompt.pk]): {
            "label": "staging",
            "version": "1",
            "reason": "try",
        },
        reverse("admin:access_apikey_add"): {"name": "k", "user": alice.pk, "scopes": ["read"], "once": "x"},
    }
    before = AuditEntry.objects.count()

    statuses = {url: client.post(url, data).status_code for url, data in posts.items()}

    assert set(statuses.values()) == {403}
    assert AuditEntry.objects.count() == before


def test_a_staff_user_sees_the_registry_and_api_keys_but_not_the_audit_log_nor_users(alice):
    response = logged_in(alice).get(reverse("admin:index"))

    app_list = response.context["app_list"]
    apps = {app["app_label"]: [model["object_name"] for model in app["models"]] for app in app_list}
    assert apps == {
        "registry": ["PromptVersion", "Prompt"],
        "access": ["ApiKey"],
        "rollouts": ["Rollout"],
        "serving": ["Override"],
    }
