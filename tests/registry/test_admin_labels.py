"""The "move label" form of the admin: label_move with a required reason."""

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from rollouts.models import Rollout
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def move(client: Client, prompt, **data):  # type: ignore[no-untyped-def]
    return client.post(reverse("admin:registry_prompt_move_label", args=[prompt.pk]), data)


def test_move_label_form_lists_the_labels_and_prefills_the_one_asked_for(alice):
    prompt = make_prompt(alice, versions=3)

    response = logged_in(alice).get(
        reverse("admin:registry_prompt_move_label", args=[prompt.pk]), {"label": "production"}
    )

    assert response.status_code == 200
    assert response.context["form"].initial == {"label": "production", "version": 1}
    assert [label.name for label in response.context["labels"]] == ["production"]
    assert '<option value="staging">' in response.content.decode()


def test_moving_a_label_calls_label_move_and_audits_the_reason(alice):
    prompt = make_prompt(alice, versions=2)

    response = move(logged_in(alice), prompt, label="staging", version="2", reason="QA sign-off")

    assert response.status_code == 302
    assert prompt.labels.get(name="staging").version.version == 2
    entry = AuditEntry.objects.get(action="label.move", object_id="staging")
    assert (entry.actor_name, entry.via, entry.reason) == ("alice", "admin", "QA sign-off")
    assert entry.data == {"label": "staging", "from_version": None, "to_version": 2}


def test_a_label_move_needs_a_reason(alice):
    prompt = make_prompt(alice, versions=2)

    response = move(logged_in(alice), prompt, label="staging", version="2", reason="")

    assert response.status_code == 200
    assert response.context["form"].errors["reason"] == ["This field is required."]
    assert not prompt.labels.filter(name="staging").exists()


def test_moving_production_while_a_rollout_is_active_shows_the_409_message(alice):
    prompt = make_prompt(alice, versions=2)
    v1, v2 = prompt.versions.get(version=1), prompt.versions.get(version=2)
    Rollout.objects.create(prompt=prompt, baseline=v1, candidate=v2, plan=[], gates=[], state="running")

    response = move(logged_in(alice), prompt, label="production", version="2", reason="ship it")

    assert response.status_code == 409
    assert "belongs to its active rollout" in response.content.decode()
    assert prompt.labels.get(name="production").version == v1


def test_a_staff_user_who_is_not_an_owner_cannot_move_a_label(alice, bob):
    prompt = make_prompt(alice, versions=2)

    response = move(logged_in(bob), prompt, label="production", version="2", reason="mine now")

    assert response.status_code == 403
    assert (
        "Only the owners of &#x27;support.answer&#x27; or an admin may change it."
        in response.content.decode()
    )
    assert prompt.labels.get(name="production").version.version == 1


def test_an_invalid_label_name_is_refused_by_the_service(alice):
    prompt = make_prompt(alice, versions=1)

    response = move(logged_in(alice), prompt, label="latest", version="1", reason="try")

    assert response.status_code == 400
    assert "&#x27;latest&#x27; is reserved" in response.content.decode()
    assert not prompt.labels.filter(name="latest").exists()
