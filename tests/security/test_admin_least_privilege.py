"""Least privilege in the admin, from the attacker's side: a staff user who is not a superuser
opens the audit log, another user's API key, or mints a key for a prompt they do not own; and
what a webhook's secret URL leaves in the audit log."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from access.models import ApiKey
from audit.models import AuditEntry
from tests.factories import make_key, make_prompt

pytestmark = pytest.mark.django_db
SLACK_URL = "https://hooks.slack.example/services/T000/B000/very-secret-token"
SECRET = "signing-secret"


@pytest.fixture(autouse=True)
def _public_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """hooks.slack.example resolves to a public address (nothing here connects to it)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.slack.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port or 443))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _mint(client: Client, **data: Any) -> Any:
    form = client.get(reverse("admin:access_apikey_add")).context["form"]
    fields = {"name": "mine", "scopes": ["ingest"], "once": form.initial["once"], **data}
    return client.post(reverse("admin:access_apikey_add"), fields)


def test_a_staff_user_cannot_open_the_audit_log(alice, admin_user, client_with_key):
    client_with_key(admin_user, "admin").post(
        "/api/v1/webhooks", {"url": SLACK_URL, "secret": SECRET}, format="json"
    )
    client = _logged_in(alice)

    listing = client.get(reverse("admin:audit_auditentry_changelist"))
    entry = AuditEntry.objects.order_by("-id").first()
    assert entry is not None
    one = client.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))
    index = client.get(reverse("admin:index"))

    assert listing.status_code == 403 and one.status_code in (302, 403)
    assert reverse("admin:audit_auditentry_changelist") not in index.content.decode()
    assert _logged_in(admin_user).get(reverse("admin:audit_auditentry_changelist")).status_code == 200


def test_a_staff_user_cannot_open_another_users_api_key(alice, bob):
    make_key(bob, "read,write")
    bobs = ApiKey.objects.get(user=bob)
    client = _logged_in(alice)

    page = client.get(reverse("admin:access_apikey_change", args=[bobs.pk]), follow=True)
    listing = client.get(reverse("admin:access_apikey_changelist") + "?q=" + bobs.prefix)

    assert bobs.prefix not in page.content.decode()
    assert list(listing.context["cl"].result_list) == []


def test_a_staff_user_mints_only_keys_limited_to_prompts_they_own(alice, bob):
    make_prompt(alice, name="support.answer")
    make_prompt(bob, name="billing.invoice")
    client = _logged_in(alice)

    everything = _mint(client, user=alice.pk)
    others = _mint(client, user=alice.pk, prompts="billing.*")
    own = _mint(client, user=alice.pk, prompts="support.*")

    assert everything.status_code == 400 and others.status_code == 403
    assert own.status_code == 200
    assert list(ApiKey.objects.values_list("prompts", flat=True)) == [["support.answer"]]
    assert AuditEntry.objects.filter(action="apikey.create", actor_name="alice").count() == 1


def test_a_webhooks_secret_url_is_kept_in_the_audit_log_as_scheme_and_host(admin_user, client_with_key):
    api = client_with_key(admin_user, "admin")

    created = api.post("/api/v1/webhooks", {"url": SLACK_URL, "secret": SECRET}, format="json")
    api.delete(f"/api/v1/webhooks/{created.json()['id']}")

    entries = AuditEntry.objects.filter(object_type="webhook")
    assert entries.count() == 2
    assert all(entry.data["url"] == "https://hooks.slack.example" for entry in entries)
    assert "very-secret-token" not in str(list(entries.values_list("data", flat=True)))
