"""The second approver and overrides (README, "Second approver"): on a prompt that requires one,
an override serving a version is added by someone other than that version's author, through the
API and the admin alike; arm overrides and the end of an override need no second approver."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEntry
from registry.models import PRODUCTION, Prompt
from registry.services import label_move, prompt_create, version_create
from rollouts.models import Outbox
from rollouts.webhooks import webhook_create
from serving.models import Override
from tests.factories import actor_for, make_key, make_prompt
from tests.serving.clients import django_get
from tests.serving.helpers import put_rollout

pytestmark = pytest.mark.django_db
NAME = "support.answer"
OVERRIDES = f"/api/v1/prompts/{NAME}/overrides"
RESOLVE = f"/api/v1/prompts/{NAME}/resolve"
PAGE = f"/admin/serving/override/prompt/{NAME}/"
PRO = {"match": {"attribute": "plan", "value": "pro"}, "version": 2, "reason": "pro plan first"}


@pytest.fixture
def prompt(alice: Any, bob: Any, settings: Any) -> Prompt:
    """support.answer requiring a second approver, owned by alice and bob; alice published v1
    (production) and v2; a webhook follows override.changed."""
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    webhook_create(
        actor=actor_for(alice, admin=True),
        url="http://127.0.0.1:9/hooks",
        secret="s3cret-s3cret",
        events=["override.changed"],
    )
    prompt = prompt_create(actor=actor_for(alice), name=NAME, owners=["bob"], require_second_approver=True)
    for n in (1, 2):
        version_create(actor=actor_for(alice), prompt_name=NAME, template=f"v{n} {{{{question}}}}")
    return prompt


def nothing_changed() -> bool:
    return (
        not Override.objects.exists()
        and not AuditEntry.objects.filter(action="override.create").exists()
        and not Outbox.objects.filter(event="override.changed").exists()
    )


@pytest.mark.parametrize(
    "match", [{"unit": "qa-7"}, {"attribute": "plan", "value": "pro"}], ids=["unit", "attribute"]
)
def test_the_author_cannot_serve_her_version_through_an_override(client_with_key, alice, prompt, match):
    refused = client_with_key(alice, "write").post(OVERRIDES, {"match": match, "version": 2}, format="json")

    assert refused.status_code == 403, refused.json()
    error = refused.json()["error"]
    assert error["code"] == "second_approver_required"
    assert error["message"] == (
        "'support.answer' requires a second approver: v2 was published by alice, so someone other "
        "than alice must serve v2 through an override. Nothing was changed."
    )
    assert error["details"] == {"prompt": NAME, "version": 2, "author": "alice"}
    assert nothing_changed()
    answer = django_get(f"{RESOLVE}?unit=qa-7&attr.plan=pro", key=make_key(alice)).json()
    assert (answer["arm"], answer["version"]) == ("production", 1)


def test_an_admin_key_of_the_author_is_still_the_author(client_with_key, alice, prompt):
    refused = client_with_key(alice, "admin").post(OVERRIDES, PRO, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "second_approver_required"
    assert nothing_changed()


def test_another_owner_serves_it_and_the_author_may_end_it(client_with_key, alice, bob, prompt):
    made = client_with_key(bob, "write").post(OVERRIDES, PRO, format="json")

    assert made.status_code == 201, made.json()
    assert (made.json()["version"], made.json()["created_by"]) == (2, "bob")
    assert AuditEntry.objects.get(action="override.create").actor_name == "bob"
    assert Outbox.objects.filter(event="override.changed").count() == 1
    answer = django_get(f"{RESOLVE}?unit=u1&attr.plan=pro", key=make_key(alice)).json()
    assert (answer["arm"], answer["version"]) == ("override", 2)

    ended = client_with_key(alice, "write").delete(f"{OVERRIDES}/{made.json()['id']}")

    assert ended.status_code == 204
    assert not Override.objects.exists()
    assert AuditEntry.objects.get(action="override.delete").actor_name == "alice"


def test_the_author_pins_callers_to_what_production_serves_now_but_to_no_other(
    client_with_key, alice, bob, prompt
):
    api = client_with_key(alice, "write")
    pinned = api.post(OVERRIDES, {**PRO, "version": 1, "reason": "pro stays on v1"}, format="json")

    assert pinned.status_code == 201, pinned.json()
    assert Override.objects.get().version.version == 1

    label_move(actor=actor_for(bob), prompt_name=NAME, label=PRODUCTION, version=2)
    again = api.post(OVERRIDES, {"match": {"unit": "qa-7"}, "version": 1}, format="json")

    assert again.status_code == 403, again.json()
    assert again.json()["error"]["code"] == "second_approver_required"
    assert Override.objects.count() == 1


def test_the_author_serves_an_arm_of_the_rollout(client_with_key, alice, prompt):
    put_rollout(prompt, baseline=1, candidate=2, percent="10")
    api = client_with_key(alice, "write")

    candidate = api.post(OVERRIDES, {"match": {"unit": "qa-7"}, "arm": "candidate"}, format="json")
    baseline = api.post(
        OVERRIDES, {"match": {"attribute": "plan", "value": "pro"}, "arm": "baseline"}, format="json"
    )

    assert (candidate.status_code, baseline.status_code) == (201, 201), (candidate.json(), baseline.json())
    assert Outbox.objects.filter(event="override.changed").count() == 2
    answer = django_get(f"{RESOLVE}?unit=qa-7", key=make_key(alice)).json()
    assert (answer["arm"], answer["version"]) == ("override", 2)


def test_a_prompt_that_does_not_require_one_takes_its_authors_override(client_with_key, alice):
    make_prompt(alice, versions=2)

    made = client_with_key(alice, "write").post(OVERRIDES, PRO, format="json")

    assert made.status_code == 201, made.json()
    assert Override.objects.get().version.version == 2


def test_the_admin_shows_the_author_the_refusal_and_adds_nothing(alice, prompt):
    browser = Client()
    browser.force_login(alice)
    assert "requires a second approver" in browser.get(PAGE).content.decode()

    refused = browser.post(
        PAGE, {"match": "attribute", "attribute": "plan", "value": "pro", "serve": "version:2"}
    )

    assert refused.status_code == 403
    page = refused.content.decode()
    assert "someone other than alice must serve v2 through an override. Nothing was changed." in page
    assert nothing_changed()


def test_the_admin_adds_another_owners_version_override(bob, prompt):
    browser = Client()
    browser.force_login(bob)

    answer = browser.post(
        PAGE, {"match": "attribute", "attribute": "plan", "value": "pro", "serve": "version:2"}, follow=True
    )

    assert answer.status_code == 200
    override = Override.objects.get()
    assert f"Override #{override.pk} added: plan = pro is served v2." in answer.content.decode()
    assert AuditEntry.objects.get(action="override.create").via == "admin"
