from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEntry


def audit_list(
    *, prompt: str | None = None, actor: str | None = None, action: str | None = None
) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.all()
    if prompt:
        entries = entries.filter(prompt_name=prompt)
    if actor:
        entries = entries.filter(actor_name=actor)
    if action:
        entries = entries.filter(action=action)
    return entries.order_by("-at", "-id")
