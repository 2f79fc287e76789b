"""The base of every admin page of promptramp, and who may see them.

Any active staff user may open the registry, audit, rollout and API-key pages: what they may
*change* is decided by the services (prompt ownership), not by Django's per-model permissions.
Our own pages (a form that calls a service, a page of one object) are plain functions
``view(request, model_admin, …)``; ``StaffAdmin`` routes to them and renders their forms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from django.contrib import admin
from django.contrib.admin.helpers import AdminForm
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.forms import CharField, Form
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.response import TemplateResponse
from django.utils.text import capfirst

from core.actors import Actor
from core.api_input import MAX_NESTING
from core.client_address import client_address_of
from core.errors import DomainError, error_body
from core.json_values import has_nul, nesting_depth
from core.rate_limits import login_failure_add, login_failures_retry_after

FORM_PAGE = "admin/promptramp/form_page.html"
NUL_REFUSAL = "Bad request: the query string holds a NUL character (%00), which no admin page accepts."
# A page of one object: view(request, model_admin, obj, **url_kwargs).
ObjectView = Callable[..., HttpResponse]


def admin_actor(request: HttpRequest) -> Actor:
    """The Actor for a change made in the admin by the logged-in user."""
    return Actor.of_user(request.user, via="admin")


def domain_error_text(error: DomainError) -> str:
    """The message of a domain error, with its details when they name what was wrong."""
    details = error.details
    if isinstance(details, dict) and details:
        return f"{error.message} ({'; '.join(f'{key}: {value}' for key, value in details.items())})"
    return error.message


class StaffAdmin(admin.ModelAdmin):
    """Pages every active staff user may open; changes are checked by the services."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        title = capfirst(self.opts.verbose_name_plural)
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self.add_page(request)

    def add_page(self, request: HttpRequest) -> HttpResponse:
        """The "add" page: ours call a service instead of saving Django's model form."""
        response: HttpResponse = super().add_view(request)
        return response

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None:
            extra_context = {**(extra_context or {}), **self.page_context(request, obj)}
        response: HttpResponse = super().change_view(request, object_id, form_url, extra_context)
        return response

    def page_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """What an object's own (read-only) page shows beyond its fields."""
        return {}

    def object_page(self, view: ObjectView) -> Callable[..., HttpResponse]:
        """``view`` as a page of the object named in the URL, or the admin's own answer when
        there is no such object."""

        def page(request: HttpRequest, object_id: str, **kwargs: Any) -> HttpResponse:
            obj = self.get_object(request, unquote(object_id))
            if obj is None:
                return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
            response: HttpResponse = view(request, self, obj, **kwargs)
            return response

        return page


class AdminQueryMiddleware:
    """Every page of the admin site refuses a query string holding a NUL character, in a
    parameter's name or value: 400 with a short plain message (``NUL_REFUSAL``), before the view
    runs any query. PostgreSQL's text cannot hold NUL, so a list's filter (``?prompt=a%00b``)
    would otherwise reach the database and answer 500; this one check covers every list, filter
    and search box, Django's pages and ours, whatever parameters they read. It applies to the
    URLs of the admin site (``admin.site.urls``, the ``admin`` namespace) and to no other: the API
    reads its query parameters through ``core.api_input.query_text``, and the login page (routed
    before the site in config/urls.py) queries nothing with its ``next`` parameter."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is not None and match.app_name == "admin" and has_nul(dict(request.GET.lists())):
            return HttpResponseBadRequest(NUL_REFUSAL, content_type="text/plain; charset=utf-8")
        return None


def parse_json(text: str, what: str) -> Any:
    """A form field's JSON, or the form's error saying why it is refused. It refuses what the
    API's body parser (core.api_input) refuses, with the same parser and limits: malformed JSON;
    ``NaN``, ``Infinity``, ``-Infinity``, numbers too large for a double and lone surrogates (all
    of which Python's json would read and PostgreSQL cannot store); lists and objects nested deeper
    than ``MAX_NESTING``; and NUL characters in any string or key (PostgreSQL cannot store them)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        constant = _not_a_number_at(text, error.pos)
        why = (
            f"{constant} is not a number JSON allows (write a finite number)"
            if constant
            else f"{error.msg} (line {error.lineno}, column {error.colno})"
        )
        raise ValidationError(f"{what} is not valid JSON: {why}.") from error
    if nesting_depth(value) > MAX_NESTING:
        raise ValidationError(f"{what} nests lists and objects more than {MAX_NESTING} levels deep.")
    if has_nul(value):
        raise ValidationError(f"{what} may not contain NUL (\\u0000) characters.")
    return value


def _not_a_number_at(text: str, position: int) -> str | None:
    """``NaN``, ``Infinity`` or ``-Infinity`` where the parser stopped reading (after the sign of
    ``-Infinity``), or None."""
    for constant in ("NaN", "Infinity"):
        if text.startswith(constant, position):
            return f"-{constant}" if text[position - 1 : position] == "-" else constant
    return None


class ReasonForm(Form):
    """The reason a button sends with its action (revoking a key, expiring an override, acting on
    a rollout), read as every form's text is: a NUL character, which PostgreSQL cannot store, is
    refused."""

    reason = CharField(required=False)

    def refusal(self) -> str:
        """Why the reason is refused, for the message shown instead of acting."""
        return "The reason is refused: " + " ".join(self.errors["reason"])


def form_page(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    *,
    form: Form,
    title: str,
    submit_label: str,
    original: Model | None = None,
    intro: str = "",
    owner_note: str = "",
    status: int = 200,
    template: str = FORM_PAGE,
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    """A page with one form, in the admin's look: errors of the service it calls come back on
    the form with the HTTP status they stand for (``status``)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title,
        "original": original,
        "adminform": AdminForm(form, [(None, {"fields": list(form.fields)})], {}),
        "form": form,
        "submit_label": submit_label,
        "intro": intro,
        "owner_note": owner_note,
        **(extra or {}),
    }
    return TemplateResponse(request, template, context, status=status)


class ExactTextFilter(admin.SimpleListFilter):
    """A filter typed into a box (there may be too many prompts or actors to list them)."""

    template = "admin/promptramp/text_filter.html"
    field_name = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def has_output(self) -> bool:
        return True

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = (self.value() or "").strip()
        return queryset.filter(**{self.field_name: value}) if value else queryset

    def choices(self, changelist: ChangeList) -> Any:
        others = {
            name: values
            for name, values in changelist.get_filters_params().items()
            if name != self.parameter_name
        }
        yield {
            "parameter_name": self.parameter_name,
            "value": self.value() or "",
            "others": [(name, value) for name, values in others.items() for value in _as_list(values)],
        }


def _as_list(values: Any) -> list[str]:
    return list(values) if isinstance(values, list) else [values]


def throttled_login(login: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The admin's login view, refusing (429) a user name from an address after
    PROMPTRAMP_LOGIN_FAILURES failed logins until 15 minutes after the first, even with the right
    password."""

    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return login(request, **kwargs)
        username = request.POST.get("username", "")
        address = client_address_of(request.META)
        wait = login_failures_retry_after(username, address)
        if wait is not None:
            message = f"Too many failed logins for this user name from your address; try again in {wait} s."
            return JsonResponse(
                error_body("rate_limited", message), status=429, headers={"Retry-After": str(wait)}
            )
        response = login(request, **kwargs)
        if response.status_code == 200:  # the form again: the credentials were refused
            login_failure_add(username, address)
        return response

    return view
