"""API keys in the admin. A staff user who is not a superuser sees and manages only their own
API keys, and creates them under the rule of ``apikey_create``: read and ingest keys limited to
prompts they own."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from access.models import SCOPES, ApiKey
from access.services import SELF_SERVICE_SCOPES, apikey_create, apikey_revoke, user_delete
from core.admin import ReasonForm, StaffAdmin, admin_actor, domain_error_text, form_page
from core.errors import DomainError

USED_FORMS_SESSION_KEY = "promptramp_apikey_forms_used"
USED_FORMS_KEPT = 20


def short_time(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "—"


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "active")
        return queryset


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. “checkout service”.")
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), help_text="The key acts as this user."
    )
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="read: fetch prompts · ingest: report outcomes · write: publish, move labels, "
        "run rollouts · checks: report rollouts' required checks (CI) · admin: everything.",
    )
    prompts = forms.CharField(
        required=False,
        max_length=30_000,
        help_text="The prompts it may touch: names or prefixes ending in *, e.g. “support.*”, "
        "separated by spaces or commas. Empty: every prompt (superusers only).",
    )
    once = forms.CharField(widget=forms.HiddenInput)

    def clean_prompts(self) -> list[str] | None:
        names = self.cleaned_data["prompts"].replace(",", " ").split()
        return names or None

    def __init__(self, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(is_active=True).order_by("username")
        scopes_field = self.fields["scopes"]
        assert isinstance(scopes_field, forms.MultipleChoiceField)
        if not request.user.is_superuser:
            users = users.filter(pk=request.user.pk)
            scopes_field.choices = [(s, s) for s in SCOPES if s in SELF_SERVICE_SCOPES]
        user_field = self.fields["user"]
        assert isinstance(user_field, forms.ModelChoiceField)
        user_field.queryset = users
        user_field.initial = request.user.pk


@admin.register(ApiKey)
class ApiKeyAdmin(StaffAdmin):
    list_display = [
        "name",
        "user",
        "key_prefix",
        "scope_list",
        "prompt_list",
        "created",
        "last_used",
        "status",
    ]
    list_select_related = ["user"]
    list_filter = [KeyStatusFilter]
    search_fields = ["name", "prefix", "user__username"]
    fields = [
        "name",
        "user",
        "key_prefix",
        "scope_list",
        "prompt_list",
        "created_at",
        "last_used_at",
        "status",
    ]
    readonly_fields = fields
    actions = ["revoke_selected"]
    change_form_template = "admin/access/apikey/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        keys = super().get_queryset(request)
        return keys if request.user.is_superuser else keys.filter(user=request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    @admin.display(description="key")
    def key_prefix(self, key: ApiKey) -> str:
        return f"{key.prefix}…"

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    @admin.display(description="prompts")
    def prompt_list(self, key: ApiKey) -> str:
        return ", ".join(key.prompts) if key.prompts else "every prompt"

    @admin.display(description="created", ordering="created_at")
    def created(self, key: ApiKey) -> str:
        return short_time(key.created_at)

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, key: ApiKey) -> str:
        return short_time(key.last_used_at)

    @admin.display(description="status", ordering="revoked_at")
    def status(self, key: ApiKey) -> str:
        if key.revoked_at:
            return format_html('<span class="pr-revoked">revoked {}</span>', short_time(key.revoked_at))
        return "active"

    @admin.action(description="Revoke the selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        actor = admin_actor(request)
        keys = list(queryset.filter(revoked_at__isnull=True).values_list("pk", flat=True)[:500])
        for key_id in keys:
            apikey_revoke(actor=actor, key_id=key_id, reason="revoked in the admin")
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        revoke = self.admin_site.admin_view(require_POST(self.object_page(revoke_view)))
        return [path("<path:object_id>/revoke/", revoke, name="access_apikey_revoke"), *super().get_urls()]

    def add_page(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            form = ApiKeyCreateForm(request=request, initial={"once": secrets.token_urlsafe(16)})
            return self._render_add(request, form)
        form = ApiKeyCreateForm(request.POST, request=request)
        used = request.session.get(USED_FORMS_SESSION_KEY, [])
        if form.data.get("once") in used:
            self.message_user(
                request,
                "That form was already sent: its key exists, and its secret is not shown again.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:access_apikey_changelist"))
        if not form.is_valid():
            return self._render_add(request, form)
        try:
            key, raw = apikey_create(
                actor=admin_actor(request),
                name=form.cleaned_data["name"],
                user=form.cleaned_data["user"],
                scopes=form.cleaned_data["scopes"],
                prompts=form.cleaned_data["prompts"],
            )
        except DomainError as error:
            form.add_error(None, domain_error_text(error))
            return self._render_add(request, form, status=error.status_code)
        request.session[USED_FORMS_SESSION_KEY] = [*used, form.cleaned_data["once"]][-USED_FORMS_KEPT:]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"API key “{key.name}” created",
            "key": key,
            "secret": raw,
            "api_url": request.build_absolute_uri("/api/v1/prompts"),
        }
        response = TemplateResponse(request, "admin/access/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def _render_add(self, request: HttpRequest, form: ApiKeyCreateForm, status: int = 200) -> HttpResponse:
        return form_page(
            request,
            self,
            form=form,
            title="Create an API key",
            submit_label="Create key",
            intro="The key is shown once, on the next page; only its hash is stored.",
            status=status,
        )


def revoke_view(request: HttpRequest, model_admin: ApiKeyAdmin, key: ApiKey) -> HttpResponse:
    form = ReasonForm(request.POST)
    if form.is_valid():
        apikey_revoke(actor=admin_actor(request), key_id=key.pk, reason=form.cleaned_data["reason"][:1000])
        model_admin.message_user(request, f"API key “{key.name}” is revoked.", messages.SUCCESS)
    else:
        refused = f"API key “{key.name}” is not revoked. {form.refusal()}"
        model_admin.message_user(request, refused, messages.ERROR)
    return HttpResponseRedirect(reverse("admin:access_apikey_change", args=[key.pk]))


class UserAdmin(DjangoUserAdmin):
    """Django's user pages; deleting a user goes through ``user_delete`` (audited, their keys
    with them), whichever button does it."""

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """The user's keys go with them (``user_delete``), though the key pages offer no delete
        button: whoever may delete the user may delete their keys."""
        deleted, count, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, count, set(), protected

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        user_delete(actor=admin_actor(request), user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for user in queryset:
            user_delete(actor=admin_actor(request), user=user)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserAdmin)
