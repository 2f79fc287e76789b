"""The audit log in the admin: read-only, filterable by action, prompt and actor; for superusers
only (it shows every change, gate configurations and who holds which key)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator

from audit.actions import AuditAction
from audit.models import AuditEntry
from core.admin import ExactTextFilter, StaffAdmin


class ActionFilter(admin.SimpleListFilter):
    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(action, action) for action in AuditAction.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEntry]) -> QuerySet[AuditEntry]:
        return queryset.filter(action=self.value()) if self.value() else queryset


class PromptFilter(ExactTextFilter):
    title = "prompt"
    parameter_name = "prompt"
    field_name = "prompt_name"


class ActorFilter(ExactTextFilter):
    title = "actor"
    parameter_name = "actor"
    field_name = "actor_name"


@admin.register(AuditEntry)
class AuditEntryAdmin(StaffAdmin):
    list_display = ["when", "who", "action", "prompt", "what", "short_reason"]
    list_filter = [ActionFilter, PromptFilter, ActorFilter]
    search_fields = ["reason", "object_id"]
    fields = [
        "at",
        "actor_name",
        "via",
        "action",
        "prompt_name",
        "object_type",
        "object_id",
        "reason",
        "data_json",
    ]
    readonly_fields = fields
    list_per_page = 50

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        return super().changelist_view(request, {"title": "Audit log", **(extra_context or {})})

    @admin.display(description="at", ordering="at")
    def when(self, entry: AuditEntry) -> str:
        return f"{entry.at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="actor", ordering="actor_name")
    def who(self, entry: AuditEntry) -> str:
        return (
            format_html("{} <small>via {}</small>", entry.actor_name, entry.via)
            if entry.via
            else entry.actor_name
        )

    @admin.display(description="prompt", ordering="prompt_name")
    def prompt(self, entry: AuditEntry) -> str:
        return entry.prompt_name

    @admin.display(description="object")
    def what(self, entry: AuditEntry) -> str:
        return f"{entry.object_type} {entry.object_id}".strip()

    @admin.display(description="reason")
    def short_reason(self, entry: AuditEntry) -> str:
        return Truncator(entry.reason).chars(80)

    @admin.display(description="data")
    def data_json(self, entry: AuditEntry) -> str:
        return format_html(
            '<pre class="pr-code">{}</pre>',
            json.dumps(entry.data, indent=2, sort_keys=True, ensure_ascii=False),
        )
