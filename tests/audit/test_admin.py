"""The audit log in the admin: read-only, for superusers, filtered by action, prompt and actor."""

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(response) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(e.action, e.prompt_name, e.actor_name) for e in response.context["cl"].result_list]


def test_audit_log_lists_entries_newest_first_for_a_superuser(alice, admin_user):
    make_prompt(alice, name="support.answer", versions=1)

    response = logged_in(admin_user).get(reverse("admin:audit_auditentry_changelist"))

    assert response.status_code == 200
    assert listed(response) == [
        ("label.move", "support.answer", "alice"),
        ("version.create", "support.answer", "alice"),
        ("prompt.create", "support.answer", "alice"),
    ]


def test_audit_log_filters_by_action_prompt_and_actor(alice, bob, admin_user):
    make_prompt(alice, name="support.answer", versions=1)
    make_prompt(bob, name="sales.pitch", versions=2)
    client = logged_in(admin_user)
    url = reverse("admin:audit_auditentry_changelist")

    by_action = client.get(url, {"action": "version.create", "prompt": "sales.pitch"})
    by_actor = client.get(url, {"actor": "alice"})

    assert listed(by_action) == [("version.create", "sales.pitch", "bob")] * 2
    assert {actor for _, _, actor in listed(by_actor)} == {"alice"} and len(listed(by_actor)) == 3
    assert 'name="prompt" value="sales.pitch"' in by_action.content.decode()
    assert '<input type="hidden" name="action" value="version.create">' in by_action.content.decode()


def test_an_audit_entry_cannot_be_added_changed_or_deleted_in_the_admin(admin_user, alice):
    make_prompt(alice, versions=1)
    entry = AuditEntry.objects.filter(action="prompt.create").get()
    client = logged_in(admin_user)

    page = client.get(reverse("admin:audit_auditentry_change", args=[entry.pk]))
    changed = client.post(reverse("admin:audit_auditentry_change", args=[entry.pk]), {"reason": "edited"})
    deleted = client.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    added = client.get(reverse("admin:audit_auditentry_add"))

    assert page.status_code == 200 and "&quot;owners&quot;" in page.content.decode()
    assert (changed.status_code, deleted.status_code, added.status_code) == (403, 403, 403)
    entry.refresh_from_db()
    assert entry.reason == ""


def test_audit_log_shows_who_acted_and_through_what(alice, admin_user):
    make_prompt(alice, versions=0)
    entry = AuditEntry.objects.get()

    response = logged_in(admin_user).get(reverse("admin:audit_auditentry_changelist"))

    assert f"{entry.actor_name} <small>via {entry.via}</small>" in response.content.decode()
