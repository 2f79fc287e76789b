"""A person who leaves can be deleted: their keys stop at once, and what they did stays in the
audit log and the registry under their name. The append-only tables accept only that."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry.models import PromptVersion
from tests.factories import UserFactory, make_key, make_prompt

pytestmark = pytest.mark.django_db


def test_deleting_a_user_with_a_history_works_and_their_keys_stop(admin_user, client):
    leaver = UserFactory(username="leaver")
    key = make_key(leaver, "read,write")
    make_prompt(leaver, name="left.behind", versions=1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/prompts/left.behind/resolve").status_code == 200
    their_entries = AuditEntry.objects.filter(actor=leaver).count()
    assert their_entries >= 2

    client.force_login(admin_user)
    response = client.post(f"/admin/auth/user/{leaver.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not User.objects.filter(username="leaver").exists()
    assert AuditEntry.objects.filter(actor_name="leaver", actor__isnull=True).count() == their_entries
    version = PromptVersion.objects.get(prompt__name="left.behind", version=1)
    assert (version.author_id, version.author_name) == (None, "leaver")
    deletion = AuditEntry.objects.get(action="user.delete")
    assert deletion.actor_name == admin_user.username and deletion.data["username"] == "leaver"
    assert len(deletion.data["api_keys_deleted"]) == 1
    assert api.get("/api/v1/prompts/left.behind/resolve").status_code == 401


@pytest.mark.parametrize(
    "change",
    [
        {"actor_name": "someone else"},
        {"actor": "other"},  # pointing an entry at another user
        {"actor": None, "reason": "rewritten"},  # forgetting the user and more at once
    ],
)
def test_the_audit_log_refuses_every_other_change(alice, change):
    make_prompt(alice, versions=1)
    entry = AuditEntry.objects.filter(actor=alice).first()
    if change.get("actor") == "other":
        change = {"actor": UserFactory(username="other")}

    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(**change)
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        PromptVersion.objects.filter(author=alice).update(author=None, template="rewritten")
