"""Rollouts in the admin: the list (filtered by state and prompt), the start form as the "add"
page, the live page as the rollout's own page, and the actions on it (POST only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from core.admin import ExactTextFilter, StaffAdmin
from rollouts.admin import views
from rollouts.admin.live_page import share_text
from rollouts.models import Rollout


class PromptNameFilter(ExactTextFilter):
    title = "prompt"
    parameter_name = "prompt"
    field_name = "prompt__name"


def state_pill(state: str) -> str:
    return format_html('<span class="pr-state pr-state-{}">{}</span>', state, state.replace("_", " "))


def two_line_time(moment: datetime | None) -> str:
    """The day above the time of day: the list stays narrow beside its filters."""
    if moment is None:
        return "—"
    return format_html('{}<br><span class="pr-quiet">{}</span>', f"{moment:%Y-%m-%d}", f"{moment:%H:%M:%S}")


class RolloutAdmin(StaffAdmin):
    list_display = ["number", "versions", "state_pill", "step", "started", "ended"]
    list_display_links = ["number"]
    list_filter = ["state", PromptNameFilter]
    search_fields = ["prompt__name"]
    list_select_related = ["prompt", "baseline", "candidate"]
    list_per_page = 50

    class Media:
        css = {"all": ["promptramp/rollouts.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Rollout]:
        return super().get_queryset(request).select_related("prompt", "baseline", "candidate")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    @admin.display(description="prompt · rollout", ordering="prompt__name")
    def number(self, rollout: Rollout) -> str:
        return f"{rollout.prompt.name} #{rollout.pk}"

    @admin.display(description="versions")
    def versions(self, rollout: Rollout) -> str:
        return f"v{rollout.baseline.version} → v{rollout.candidate.version}"

    @admin.display(description="state", ordering="state")
    def state_pill(self, rollout: Rollout) -> str:
        return state_pill(rollout.state)

    @admin.display(description="step · %")
    def step(self, rollout: Rollout) -> str:
        share = share_text(rollout, rollout.percent, rollout.step_index, rollout.state)
        return f"{rollout.step_index + 1} of {len(rollout.plan)} · {share}"

    @admin.display(description="started", ordering="started_at")
    def started(self, rollout: Rollout) -> str:
        return two_line_time(rollout.started_at)

    @admin.display(description="ended", ordering="ended_at")
    def ended(self, rollout: Rollout) -> str:
        return two_line_time(rollout.ended_at)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/live/",
                wrap(require_GET(self.object_page(views.live_part))),
                name="rollouts_rollout_live",
            ),
            path(
                "<path:object_id>/act/<slug:action>/",
                wrap(require_POST(self.object_page(views.act))),
                name="rollouts_rollout_action",
            ),
            *super().get_urls(),
        ]

    def add_page(self, request: HttpRequest) -> HttpResponse:
        return views.rollout_new(request, self)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The rollout's page is its live page."""
        return self.object_page(views.live)(request, object_id)
