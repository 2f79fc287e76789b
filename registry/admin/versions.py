"""Versions in the admin: a read-only page each. Versions are immutable, so there is nothing to
change or delete here (and PostgreSQL refuses it too); new versions come from the prompt's
"New version" form."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin import StaffAdmin, admin_actor
from registry.admin.prompts import label_pills
from registry.models import PRODUCTION, PromptVersion
from registry.selectors import actor_owns


def _pre(text: str) -> str:
    return format_html('<pre class="pr-code">{}</pre>', text)


class PromptVersionAdmin(StaffAdmin):
    list_display = ["__str__", "message", "author_name", "model", "created_at"]
    list_select_related = ["prompt"]
    search_fields = ["prompt__name", "message", "content_hash", "git_commit", "git_tag"]
    fields = [
        "prompt_link",
        "version",
        "content",
        "model",
        "config_json",
        "variable_list",
        "author_name",
        "message",
        "git_commit",
        "git_tag",
        "content_hash",
        "labels_on_it",
        "created_at",
    ]
    readonly_fields = fields
    change_form_template = "admin/registry/promptversion/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromptVersion]:
        return super().get_queryset(request).select_related("prompt").prefetch_related("labels")

    @admin.display(description="prompt")
    def prompt_link(self, version: PromptVersion) -> str:
        url = reverse("admin:registry_prompt_change", args=[version.prompt_id])
        return format_html('<a href="{}">{}</a> ({})', url, version.prompt.name, version.prompt.kind)

    @admin.display(description="template / messages")
    def content(self, version: PromptVersion) -> str:
        if version.messages is None:
            return _pre(version.template or "")
        return format_html_join(
            "",
            '<div class="pr-message"><div class="pr-role">{}</div>{}</div>',
            ((message["role"], _pre(message["content"])) for message in version.messages),
        )

    @admin.display(description="config")
    def config_json(self, version: PromptVersion) -> str:
        return _pre(json.dumps(version.config, indent=2, sort_keys=True, ensure_ascii=False))

    @admin.display(description="variables")
    def variable_list(self, version: PromptVersion) -> str:
        return ", ".join(version.variables) or "—"

    @admin.display(description="labels on it")
    def labels_on_it(self, version: PromptVersion) -> str:
        return label_pills([label.name for label in version.labels.all()]) or "—"

    def page_context(self, request: HttpRequest, version: PromptVersion) -> dict[str, Any]:
        is_production = any(label.name == PRODUCTION for label in version.labels.all())
        return {"can_roll_out": not is_production and actor_owns(admin_actor(request), version.prompt)}
