"""The audit log records named actions only: a misspelt action is refused, not stored."""

from __future__ import annotations

import pytest

from audit.actions import AuditAction
from audit.models import AuditEntry
from audit.services import audit_record
from core.actors import Actor
from rollouts.webhooks import EVENTS


@pytest.mark.django_db
def test_an_action_that_is_not_an_audit_action_is_refused_and_nothing_is_written() -> None:
    with pytest.raises(ValueError):
        audit_record(actor=Actor.system(), action="label.moved")  # type: ignore[arg-type]
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_an_audit_action_is_stored_by_its_name() -> None:
    entry = audit_record(actor=Actor.system(), action=AuditAction.LABEL_MOVE, prompt_name="p")
    assert AuditEntry.objects.get(pk=entry.pk).action == "label.move"


def test_every_rollout_transition_has_its_audit_action() -> None:
    assert {AuditAction.of_rollout_event(event) for event in EVENTS} <= set(AuditAction)
