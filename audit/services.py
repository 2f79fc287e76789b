from __future__ import annotations

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
    action = AuditAction(action)
    return AuditEntry.objects.create(
        actor_id=actor.user_id,
        actor_name=actor.name,
        via=actor.via,
        action=action,
        prompt_name=prompt_name,
        object_type=object_type,
        object_id=str(object_id),
        reason=reason or "",
        data=data or {},
    )
