"""Prompts in the admin: the list, and a read-only page with owners, labels and versions, from
which an owner publishes a version, moves a label or compares two versions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import F, Func, OuterRef, QuerySet, Subquery
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from core.admin import StaffAdmin, admin_actor
from registry.admin import views
from registry.models import PRODUCTION, Label, Prompt, PromptVersion
from registry.selectors import actor_owns, langfuse_mirror_state, owner_names

# The prompt page lists this many versions, newest first; the versions page has them all.
VERSIONS_ON_PROMPT_PAGE = 30
MAX_TAGS_IN_FILTER = 200


def label_pills(names: list[str]) -> str:
    return format_html_join(" ", '<span class="pr-label">{}</span>', ((name,) for name in sorted(names)))


def version_link(version: PromptVersion) -> str:
    url = reverse("admin:registry_promptversion_change", args=[version.pk])
    return format_html('<a href="{}">v{}</a>', url, version.version)


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tags = (
            Prompt.objects.annotate(tag=Func(F("tags"), function="unnest"))
            .values_list("tag", flat=True)
            .distinct()
            .order_by("tag")[:MAX_TAGS_IN_FILTER]
        )
        return [(tag, tag) for tag in tags]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Prompt]) -> QuerySet[Prompt]:
        return queryset.filter(tags__contains=[self.value()]) if self.value() else queryset


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LabelInline(ReadOnlyInline):
    model = Label
    fields = ["label", "points_at", "updated_at"]
    readonly_fields = fields
    verbose_name_plural = "labels"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Label]:
        return super().get_queryset(request).select_related("version")

    @admin.display(description="label")
    def label(self, label: Label) -> str:
        return label_pills([label.name])

    @admin.display(description="version")
    def points_at(self, label: Label) -> str:
        return version_link(label.version)


class NewestVersionsFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[PromptVersion]:
        return super().get_queryset().order_by("-version")[:VERSIONS_ON_PROMPT_PAGE]


class VersionInline(ReadOnlyInline):
    model = PromptVersion
    formset = NewestVersionsFormSet
    fields = ["number", "message", "author_name", "model", "labels_on_it", "created_at"]
    readonly_fields = fields
    verbose_name_plural = f"versions (the newest {VERSIONS_ON_PROMPT_PAGE})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromptVersion]:
        return super().get_queryset(request).prefetch_related("labels")

    @admin.display(description="version")
    def number(self, version: PromptVersion) -> str:
        return version_link(version)

    @admin.display(description="labels")
    def labels_on_it(self, version: PromptVersion) -> str:
        return label_pills([label.name for label in version.labels.all()])


class PromptAdmin(StaffAdmin):
    list_display = ["name", "kind", "tag_list", "owner_list", "production", "latest"]
    list_filter = ["kind", TagFilter]
    search_fields = ["name", "description"]
    fields = [
        "name",
        "kind",
        "description",
        "tag_list",
        "owner_list",
        "second_approver",
        "latest",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [LabelInline, VersionInline]
    change_form_template = "admin/registry/prompt/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Prompt]:
        production = Label.objects.filter(prompt=OuterRef("pk"), name=PRODUCTION).values("version__version")
        return (
            super()
            .get_queryset(request)
            .annotate(production_version=Subquery(production[:1]))
            .prefetch_related("owner_users", "owner_groups")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.fields + (["mirror"] if settings.PROMPTRAMP_LANGFUSE_MIRROR else [])

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.get_fields(request, obj)

    @admin.display(description="Langfuse mirror")
    def mirror(self, prompt: Prompt) -> str:
        state = langfuse_mirror_state(prompt)
        if state is None:
            return "off"
        shown = str(state["state"]).replace("_", " ")
        return f"{shown}: {state['reason']}" if state["reason"] else shown

    @admin.display(description="tags")
    def tag_list(self, prompt: Prompt) -> str:
        return ", ".join(prompt.tags)

    @admin.display(description="owners")
    def owner_list(self, prompt: Prompt) -> str:
        return ", ".join(owner_names(prompt))

    @admin.display(description="second approver")
    def second_approver(self, prompt: Prompt) -> str:
        if prompt.require_second_approver:
            return "required: rollouts and production moves need someone other than the version's author"
        return "not required"

    @admin.display(description="production", ordering="production_version")
    def production(self, prompt: Prompt) -> str:
        number = getattr(prompt, "production_version", None)
        return f"v{number}" if number else "—"

    @admin.display(description="latest", ordering="latest_version")
    def latest(self, prompt: Prompt) -> str:
        return f"v{prompt.latest_version}" if prompt.latest_version else "—"

    def get_urls(self) -> list[URLPattern]:
        pages = [
            ("new-version", views.version_new, "registry_prompt_new_version"),
            ("move-label", views.label_move_view, "registry_prompt_move_label"),
            ("diff", views.version_diff, "registry_prompt_diff"),
            ("resume-langfuse-mirror", views.langfuse_mirror_resume_view, "registry_prompt_resume_mirror"),
            ("second-approver", views.second_approver_view, "registry_prompt_second_approver"),
        ]
        return [
            path(f"<path:object_id>/{suffix}/", self.admin_site.admin_view(self.object_page(view)), name=name)
            for suffix, view, name in pages
        ] + super().get_urls()

    def add_page(self, request: HttpRequest) -> HttpResponse:
        return views.prompt_add(request, self)

    def page_context(self, request: HttpRequest, prompt: Prompt) -> dict[str, Any]:
        return {
            "prompt_owned": actor_owns(admin_actor(request), prompt),
            "owners": ", ".join(owner_names(prompt)) or "none",
            "version_count": prompt.versions.count(),
            "mirror_stopped": (langfuse_mirror_state(prompt) or {}).get("state") == "stopped",
        }
