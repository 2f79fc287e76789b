"""The admin's overrides page of a prompt: list, add, expire, through the services, with the
confirmation of what was done; only owners change them; POSTs need their CSRF token."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEntry
from serving.models import Override
from tests.browser.conftest import PASSWORD
from tests.factories import make_key, make_prompt
from tests.serving.clients import django_get

pytestmark = pytest.mark.django_db
PAGE = "/admin/serving/override/prompt/support.answer/"


@pytest.fixture
def alice_browser(alice):
    alice.set_password(PASSWORD)
    alice.save()
    client = Client()
    client.force_login(alice)
    return client


def test_an_owner_adds_an_override_and_sees_what_was_done(alice, alice_browser):
    make_prompt(alice, versions=2)

    answer = alice_browser.post(
        PAGE,
        {
            "match": "attribute",
            "attribute": "tenant",
            "value": "acme",
            "serve": "version:2",
            "reason": "freeze",
        },
        follow=True,
    )

    assert answer.status_code == 200
    override = Override.objects.get()
    assert (override.attribute, override.value, override.version.version) == ("tenant", "acme", 2)
    assert f"Override #{override.pk} added: tenant = acme is served v2." in answer.content.decode()
    assert "freeze" in answer.content.decode()
    assert AuditEntry.objects.get(action="override.create").via == "admin"
    body = django_get(
        "/api/v1/prompts/support.answer/resolve?unit=u&attr.tenant=acme", key=make_key(alice)
    ).json()
    assert body["arm"] == "override" and body["version"] == 2


def test_a_refused_override_comes_back_on_the_form_with_its_status(alice, alice_browser):
    make_prompt(alice, versions=2)
    alice_browser.post(PAGE, {"match": "unit", "unit": "qa-7", "serve": "arm:candidate"})

    again = alice_browser.post(PAGE, {"match": "unit", "unit": "qa-7", "serve": "version:1"})
    empty = alice_browser.post(PAGE, {"match": "unit", "unit": "", "serve": "version:1"})
    in_the_past = alice_browser.post(
        PAGE, {"match": "unit", "unit": "qa-8", "serve": "version:1", "expires_at": "2001-01-01 00:00"}
    )

    assert again.status_code == 409 and "already applies" in again.content.decode()
    assert empty.status_code == 400 and "match.unit" in empty.content.decode()
    assert in_the_past.status_code == 400 and "must be in the future" in in_the_past.content.decode()
    assert Override.objects.count() == 1


def test_an_owner_expires_an_override(alice, alice_browser):
    make_prompt(alice, versions=2)
    alice_browser.post(PAGE, {"match": "unit", "unit": "qa-7", "serve": "arm:candidate"})
    override = Override.objects.get()

    assert alice_browser.get(f"{PAGE}{override.pk}/expire/").status_code == 405
    answer = alice_browser.post(f"{PAGE}{override.pk}/expire/", follow=True)

    assert f"Override #{override.pk} expired" in answer.content.decode()
    assert not Override.objects.exists()
    assert AuditEntry.objects.filter(action="override.delete").count() == 1


def test_an_expire_reason_holding_a_nul_character_is_refused_and_the_override_stays(alice, alice_browser):
    make_prompt(alice, versions=2)
    alice_browser.post(PAGE, {"match": "unit", "unit": "qa-7", "serve": "arm:candidate"})
    override = Override.objects.get()
    audited = AuditEntry.objects.count()

    answer = alice_browser.post(f"{PAGE}{override.pk}/expire/", {"reason": "done\x00"}, follow=True)

    assert answer.status_code == 200
    assert (
        f"Override #{override.pk} is not expired. The reason is refused: Null characters are not allowed."
        in answer.content.decode()
    )
    assert Override.objects.get() == override
    assert AuditEntry.objects.count() == audited


def test_someone_else_sees_the_overrides_but_cannot_change_them(alice, bob, alice_browser):
    make_prompt(alice, versions=2)
    alice_browser.post(PAGE, {"match": "unit", "unit": "qa-7", "serve": "arm:candidate", "reason": "QA"})
    override = Override.objects.get()
    other = Client()
    other.force_login(bob)

    page = other.get(PAGE).content.decode()
    refused = other.post(PAGE, {"match": "unit", "unit": "qa-8", "serve": "version:1"})
    expired = other.post(f"{PAGE}{override.pk}/expire/", follow=True).content.decode()

    assert "unit qa-7" in page and "Expire now" not in page and "Add override" not in page
    assert refused.status_code == 403
    assert "Only the owners" in expired
    assert Override.objects.count() == 1


def test_posts_need_their_csrf_token(alice):
    make_prompt(alice, versions=2)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    answer = client.post(PAGE, {"match": "unit", "unit": "qa-7", "serve": "version:1"})

    assert answer.status_code == 403
    assert not Override.objects.exists()


def test_an_unknown_prompt_has_no_overrides_page(alice, alice_browser):
    assert alice_browser.get("/admin/serving/override/prompt/nope/").status_code == 404


def test_the_list_of_every_override_links_each_prompt_page(alice, alice_browser):
    make_prompt(alice, versions=2)
    alice_browser.post(PAGE, {"match": "unit", "unit": "qa-7", "serve": "arm:candidate"})

    page = alice_browser.get("/admin/serving/override/?prompt=support.answer").content.decode()

    assert f'href="{PAGE}"' in page and "unit qa-7" in page
