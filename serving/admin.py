"""Overrides in the admin: each prompt's page of overrides (``prompt/<name>/``) lists them,
adds one and expires one, through serving.services with the logged-in user as the actor; the
list of every prompt's overrides links to those pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import AdminForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.admin import ExactTextFilter, ReasonForm, StaffAdmin, admin_actor, domain_error_text
from core.errors import DomainError
from registry.errors import PromptNotFound
from registry.models import Prompt
from registry.selectors import actor_owns, owner_names, prompt_get
from serving.models import Override
from serving.selectors import override_list
from serving.services import override_create, override_delete

# The version select lists at most this many versions, newest first.
MAX_VERSION_CHOICES = 500


def prompt_overrides_url(name: str) -> str:
    return reverse("admin:serving_override_prompt", args=[name])


def served_text(override: Override) -> str:
    if override.version is not None:
        return f"v{override.version.version}"
    return f"the {override.arm} (of the active rollout; production when none)"


def match_text(override: Override) -> str:
    return f"unit {override.unit}" if override.unit else f"{override.attribute} = {override.value}"


class OverrideForm(forms.Form):
    match = forms.ChoiceField(
        choices=[("unit", "a unit"), ("attribute", "an attribute value")],
        widget=forms.RadioSelect,
        initial="unit",
    )
    unit = forms.CharField(required=False, max_length=512, help_text="the caller's unit, e.g. qa-7")
    attribute = forms.CharField(required=False, max_length=64, help_text="e.g. tenant")
    value = forms.CharField(required=False, max_length=200, help_text="e.g. acme")
    serve = forms.ChoiceField(help_text="an arm follows whichever rollout is active")
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    expires_at = forms.DateTimeField(
        required=False, help_text="UTC, e.g. 2026-12-31 18:00; empty: until expired by hand"
    )

    def __init__(self, *args: Any, versions: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["serve"].choices = [
            ("arm:candidate", "the candidate"),
            ("arm:baseline", "the baseline"),
        ] + [(f"version:{number}", f"v{number}") for number in versions]

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data["match"] == "unit":
            match = {"unit": data["unit"]}
        else:
            match = {"attribute": data["attribute"], "value": data["value"]}
        kind, _, target = data["serve"].partition(":")
        return {
            "match": match,
            "version": int(target) if kind == "version" else None,
            "arm": target if kind == "arm" else None,
            "reason": data["reason"],
            "expires_at": data["expires_at"],
        }


class PromptFilter(ExactTextFilter):
    title = "prompt"
    parameter_name = "prompt"
    field_name = "prompt__name"


class OverrideAdmin(StaffAdmin):
    list_display = ["id", "prompt_page", "matches", "serves", "expires_at", "created_by_name", "created_at"]
    list_filter = [PromptFilter]
    list_select_related = ["prompt", "version"]

    @admin.display(description="prompt")
    def prompt_page(self, override: Override) -> str:
        return format_html(
            '<a href="{}">{}</a>', prompt_overrides_url(override.prompt.name), override.prompt.name
        )

    @admin.display(description="matches")
    def matches(self, override: Override) -> str:
        return match_text(override)

    @admin.display(description="serves")
    def serves(self, override: Override) -> str:
        return served_text(override)

    def get_urls(self) -> list[URLPattern]:
        site = self.admin_site
        return [
            path(
                "prompt/<str:name>/", site.admin_view(self.prompt_page_view), name="serving_override_prompt"
            ),
            path(
                "prompt/<str:name>/<int:override_id>/expire/",
                site.admin_view(self.expire_view),
                name="serving_override_expire",
            ),
        ] + super().get_urls()

    def prompt_page_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            prompt = prompt_get(name)
        except PromptNotFound:
            raise Http404(f"Prompt '{name}' does not exist.") from None
        versions = list(
            prompt.versions.order_by("-version").values_list("version", flat=True)[:MAX_VERSION_CHOICES]
        )
        form = OverrideForm(request.POST if request.method == "POST" else None, versions=versions)
        status = 200
        if form.is_valid():
            try:
                override = override_create(
                    actor=admin_actor(request), prompt_name=prompt.name, **form.service_arguments()
                )
            except DomainError as error:
                form.add_error(None, domain_error_text(error))
                status = error.status_code
            else:
                added = f"Override #{override.pk} added: {match_text(override)}"
                self.message_user(request, f"{added} is served {served_text(override)}.", messages.SUCCESS)
                return HttpResponseRedirect(prompt_overrides_url(prompt.name))
        elif request.method == "POST":
            status = 400
        return self._page(request, prompt, form, status)

    def expire_view(self, request: HttpRequest, name: str, override_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ReasonForm(request.POST)
        if not form.is_valid():
            refused = f"Override #{override_id} is not expired. {form.refusal()}"
            self.message_user(request, refused, messages.ERROR)
            return HttpResponseRedirect(prompt_overrides_url(name))
        try:
            override_delete(
                actor=admin_actor(request),
                prompt_name=name,
                override_id=override_id,
                reason=form.cleaned_data["reason"],
            )
        except DomainError as error:
            self.message_user(request, domain_error_text(error), messages.ERROR)
        else:
            self.message_user(
                request,
                f"Override #{override_id} expired: its callers are served as if it never was.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(prompt_overrides_url(name))

    def _page(self, request: HttpRequest, prompt: Prompt, form: OverrideForm, status: int) -> HttpResponse:
        now = timezone.now()
        owned = actor_owns(admin_actor(request), prompt)
        rows = [
            {
                "override": override,
                "matches": match_text(override),
                "serves": served_text(override),
                "active": override.expires_at is None or override.expires_at > now,
            }
            for override in override_list(prompt_name=prompt.name)
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Overrides of {prompt.name}",
            "prompt": prompt,
            "prompt_url": reverse("admin:registry_prompt_change", args=[prompt.pk]),
            "rows": rows,
            "owned": owned,
            "owners": ", ".join(owner_names(prompt)) or "none",
            "adminform": AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
            "form": form,
        }
        return TemplateResponse(request, "admin/serving/override/prompt.html", context, status=status)


admin.site.register(Override, OverrideAdmin)
