"""API keys in the admin: created through apikey_create with the secret shown once, revoked by a
POST through apikey_revoke."""

import pytest
from django.test import Client
from django.urls import reverse

from access.models import ApiKey
from access.services import hash_key
from audit.models import AuditEntry
from tests.factories import make_key, make_prompt

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def create(client: Client, **data):  # type: ignore[no-untyped-def]
    form = client.get(reverse("admin:access_apikey_add")).context["form"]
    fields = {"name": "checkout", "scopes": ["read", "ingest"], "once": form.initial["once"], **data}
    return client.post(reverse("admin:access_apikey_add"), fields)


def test_creating_a_key_shows_its_secret_once_and_stores_only_its_hash(admin_user, alice):
    client = logged_in(admin_user)

    response = create(client, user=alice.pk)

    secret = response.context["secret"]
    key = ApiKey.objects.get()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert secret in response.content.decode() and secret.startswith("pr_")
    assert (key.user, key.scopes, key.key_hash) == (alice, ["ingest", "read"], hash_key(secret))
    assert secret not in client.get(reverse("admin:access_apikey_change", args=[key.pk])).content.decode()
    entry = AuditEntry.objects.get(action="apikey.create")
    assert (entry.actor_name, entry.via, entry.data["user"]) == ("root", "admin", "alice")


def test_sending_the_same_create_form_again_makes_no_second_key_and_shows_no_secret(admin_user, alice):
    client = logged_in(admin_user)
    form = client.get(reverse("admin:access_apikey_add")).context["form"]
    fields = {"name": "checkout", "user": alice.pk, "scopes": ["read"], "once": form.initial["once"]}
    first = client.post(reverse("admin:access_apikey_add"), fields)

    again = client.post(reverse("admin:access_apikey_add"), fields, follow=True)

    assert ApiKey.objects.count() == 1
    assert first.context["secret"] not in again.content.decode()
    assert "its secret is not shown again" in again.content.decode()


def test_a_key_without_scopes_is_not_created(admin_user):
    response = create(logged_in(admin_user), user=admin_user.pk, scopes=[])

    assert response.status_code == 200
    assert response.context["form"].errors["scopes"] == ["This field is required."]
    assert not ApiKey.objects.exists()


def test_key_list_shows_prefix_scopes_and_whether_revoked(admin_user, alice):
    make_key(alice, "read,write")

    response = logged_in(admin_user).get(reverse("admin:access_apikey_changelist"))

    key = ApiKey.objects.get()
    html = response.content.decode()
    assert f"{key.prefix}…" in html and "read, write" in html and "active" in html
    assert key.key_hash not in html


def test_revoking_a_key_is_a_post_through_apikey_revoke(admin_user, alice):
    make_key(alice, "read")
    key = ApiKey.objects.get()
    client = logged_in(admin_user)
    url = reverse("admin:access_apikey_revoke", args=[key.pk])

    by_get = client.get(url)
    by_post = client.post(url, {"reason": "leaked in a log"})

    key.refresh_from_db()
    assert by_get.status_code == 405 and by_post.status_code == 302
    assert key.revoked_at is not None
    entry = AuditEntry.objects.get(action="apikey.revoke")
    assert (entry.actor_name, entry.via, entry.reason) == ("root", "admin", "leaked in a log")


def test_a_revoke_reason_holding_a_nul_character_is_refused_and_the_key_stays_active(admin_user, alice):
    make_key(alice, "read")
    key = ApiKey.objects.get()
    audited = AuditEntry.objects.count()

    response = logged_in(admin_user).post(
        reverse("admin:access_apikey_revoke", args=[key.pk]), {"reason": "leaked\x00"}, follow=True
    )

    key.refresh_from_db()
    assert response.status_code == 200
    assert (
        "API key “test” is not revoked. The reason is refused: Null characters are not allowed."
        in response.content.decode()
    )
    assert key.revoked_at is None
    assert AuditEntry.objects.count() == audited


def test_revoking_selected_keys_from_the_list(admin_user, alice):
    make_key(alice, "read")
    make_key(alice, "ingest")

    logged_in(admin_user).post(
        reverse("admin:access_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": list(ApiKey.objects.values_list("pk", flat=True))},
    )

    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()
    assert AuditEntry.objects.filter(action="apikey.revoke", via="admin").count() == 2


def test_a_staff_user_sees_and_creates_only_their_own_keys_without_admin_scope(alice, bob):
    make_key(bob, "read")
    make_prompt(alice, name="support.answer")
    client = logged_in(alice)

    listing = client.get(reverse("admin:access_apikey_changelist"))
    for_bob = create(client, user=bob.pk, scopes=["read"])
    as_admin = create(client, user=alice.pk, scopes=["admin"])
    as_writer = create(client, user=alice.pk, scopes=["write"])
    own = create(client, user=alice.pk, scopes=["read"], prompts="support.*")

    assert list(listing.context["cl"].result_list) == []
    assert "user" in for_bob.context["form"].errors and "scopes" in as_admin.context["form"].errors
    assert "scopes" in as_writer.context["form"].errors
    assert own.status_code == 200 and ApiKey.objects.filter(user=alice).count() == 1
    bob_key = ApiKey.objects.get(user=bob)
    assert logged_in(alice).post(reverse("admin:access_apikey_revoke", args=[bob_key.pk])).status_code == 302
    bob_key.refresh_from_db()
    assert bob_key.revoked_at is None
