from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audit.actions import AuditAction
from audit.models import AuditEntry
from core.actors import Actor


def audit_record(
    *,
    actor: Actor,
    action: AuditAction,
    prompt_name: str = "",
    object_type: str = "",
    object_id: object = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the audit log (call inside the transaction of the change it records).
    ``action`` is one of AuditAction's (ValueError for any other)."""
    entry = audit_entry(
        actor=actor,
        action=action,
        prompt_name=prompt_name,
        object_type=object_type,
        object_id=object_id,
        reason=reason,
        data=data,
    )
    entry.save(force_insert=True)
    return entry


def audit_record_many(entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """Append entries made by `audit_entry` to the audit log in one insert, in order (call inside
    the transaction of the changes they record)."""
    return AuditEntry.objects.bulk_create(entries)


def audit_entry(
    *,
    actor: Actor,
    action: AuditAction,
    prompt_name: str = "",
    object_type: str = "",
    object_id: object = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """An entry as `audit_record` appends it, not yet stored: for `audit_record_many`."""
    return AuditEntry(
        actor_id=actor.user_id,
        actor_name=actor.name,
        via=actor.via,
        action=AuditAction(action),
        prompt_name=prompt_name,
        object_type=object_type,
        object_id=str(object_id),
        reason=reason or "",
        data=data or {},
    )
