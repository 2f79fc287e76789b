"""The registry's admin pages beyond Django's own: create a prompt, publish a version, move a
label, compare two versions, require a second approver. Each change calls one service with the
logged-in user as actor; a DomainError comes back on the form, with the HTTP status it stands
for."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator

from core.admin import admin_actor, domain_error_text, form_page
from core.errors import DomainError
from registry.admin.forms import (
    DiffChoiceForm,
    LabelMoveForm,
    PromptCreateForm,
    SecondApproverForm,
    VersionCreateForm,
)
from registry.diff import MAX_ROWS, compare, version_sections
from registry.langfuse_mirror import langfuse_mirror_resume
from registry.models import PRODUCTION, Prompt, PromptVersion
from registry.selectors import actor_owns, owner_names, version_content
from registry.services import label_move, prompt_create, prompt_update, version_create

# Version selects list at most this many versions, newest first.
MAX_VERSION_CHOICES = 500
COMMON_LABELS = ("production", "staging")


def prompt_url(prompt: Prompt) -> str:
    return reverse("admin:registry_prompt_change", args=[prompt.pk])


def prompt_add(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    form = PromptCreateForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_valid():
        data = form.cleaned_data
        try:
            prompt = prompt_create(
                actor=admin_actor(request),
                name=data["name"],
                kind=data["kind"],
                description=data["description"],
                tags=data["tags"],
                owners=data["owners"],
                require_second_approver=data["require_second_approver"],
            )
        except DomainError as error:
            form.add_error(None, domain_error_text(error))
            status = error.status_code
        else:
            model_admin.message_user(
                request,
                f"Prompt “{prompt.name}” created. Publish its first version: it becomes production.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:registry_prompt_new_version", args=[prompt.pk]))
    return form_page(
        request, model_admin, form=form, title="Add prompt", submit_label="Create prompt", status=status
    )


def version_new(request: HttpRequest, model_admin: admin.ModelAdmin, prompt: Prompt) -> HttpResponse:
    status, intro = 200, ""
    if request.method == "POST":
        form = VersionCreateForm(request.POST, kind=prompt.kind)
        if form.is_valid():
            data = form.cleaned_data
            try:
                version, created = version_create(
                    actor=admin_actor(request),
                    prompt_name=prompt.name,
                    template=data.get("template"),
                    messages=data.get("messages"),
                    model=data["model"],
                    config=data["config"],
                    message=data["message"],
                    labels=data["labels"],
                )
            except DomainError as error:
                form.add_error(None, domain_error_text(error))
                status = error.status_code
            else:
                _report_published(request, model_admin, version, created)
                return HttpResponseRedirect(prompt_url(prompt))
    else:
        source = _version_or_latest(prompt, request.GET.get("from"))
        form = VersionCreateForm(
            kind=prompt.kind, initial=VersionCreateForm.initial_from(source, prompt.kind)
        )
        intro = f"Pre-filled from v{source.version}." if source else "The first version becomes production."
    return form_page(
        request,
        model_admin,
        form=form,
        title=f"New version of {prompt.name}",
        original=prompt,
        submit_label="Publish version",
        intro=intro,
        owner_note=owner_note(request, prompt),
        status=status,
    )


def label_move_view(request: HttpRequest, model_admin: admin.ModelAdmin, prompt: Prompt) -> HttpResponse:
    labels = list(prompt.labels.select_related("version").order_by("name"))
    choices = version_choices(prompt)
    status = 200
    if request.method == "POST":
        form = LabelMoveForm(request.POST, versions=choices)
        if form.is_valid():
            data = form.cleaned_data
            try:
                label_move(
                    actor=admin_actor(request),
                    prompt_name=prompt.name,
                    label=data["label"],
                    version=data["version"],
                    reason=data["reason"],
                )
            except DomainError as error:
                form.add_error(None, domain_error_text(error))
                status = error.status_code
            else:
                model_admin.message_user(
                    request, f"“{data['label']}” now points at v{data['version']}.", messages.SUCCESS
                )
                return HttpResponseRedirect(prompt_url(prompt))
    else:
        label = request.GET.get("label", "")
        current = next((item.version.version for item in labels if item.name == label), None)
        form = LabelMoveForm(
            initial={"label": label, "version": current or prompt.latest_version}, versions=choices
        )
    names = sorted({item.name for item in labels} | set(COMMON_LABELS))
    return form_page(
        request,
        model_admin,
        form=form,
        title=f"Move a label of {prompt.name}",
        original=prompt,
        submit_label="Move label",
        owner_note=owner_note(request, prompt),
        status=status,
        template="admin/registry/prompt/move_label.html",
        extra={"labels": labels, "label_names": names},
    )


def second_approver_view(request: HttpRequest, model_admin: admin.ModelAdmin, prompt: Prompt) -> HttpResponse:
    status = 200
    if request.method == "POST":
        form = SecondApproverForm(request.POST)
        if form.is_valid():
            wanted = form.cleaned_data["require_second_approver"]
            try:
                prompt_update(
                    actor=admin_actor(request), prompt_name=prompt.name, require_second_approver=wanted
                )
            except DomainError as error:
                form.add_error(None, domain_error_text(error))
                status = error.status_code
            else:
                done = "now requires" if wanted else "no longer requires"
                model_admin.message_user(
                    request, f"“{prompt.name}” {done} a second approver.", messages.SUCCESS
                )
                return HttpResponseRedirect(prompt_url(prompt))
    else:
        form = SecondApproverForm(initial={"require_second_approver": prompt.require_second_approver})
    return form_page(
        request,
        model_admin,
        form=form,
        title=f"Second approver of {prompt.name}",
        original=prompt,
        submit_label="Save",
        owner_note=owner_note(request, prompt),
        status=status,
    )


def version_diff(request: HttpRequest, model_admin: admin.ModelAdmin, prompt: Prompt) -> HttpResponse:
    choices = version_choices(prompt)
    form = DiffChoiceForm(request.GET if "old" in request.GET else None, versions=choices)
    if form.is_bound and form.is_valid():
        old_number, new_number = form.cleaned_data["old"], form.cleaned_data["new"]
    else:
        old_number, new_number = _default_pair(prompt)
        form = DiffChoiceForm(initial={"old": old_number, "new": new_number}, versions=choices)
    versions = {
        v.version: v
        for v in prompt.versions.filter(version__in=[old_number, new_number]).prefetch_related("labels")
    }
    old, new = versions.get(old_number), versions.get(new_number)
    sections = (
        compare(version_sections(version_content(old)), version_sections(version_content(new)))
        if old and new
        else []
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"Compare versions of {prompt.name}",
        "original": prompt,
        "form": form,
        "old": old,
        "new": new,
        "sections": sections,
        "max_rows": MAX_ROWS,
        "changed": any(section.changed for section in sections),
    }
    return TemplateResponse(request, "admin/registry/prompt/diff.html", context)


def _default_pair(prompt: Prompt) -> tuple[int, int]:
    """Production against the latest version, or the two latest when production is the latest."""
    latest = prompt.latest_version
    production = prompt.labels.filter(name=PRODUCTION).values_list("version__version", flat=True).first()
    if production and production != latest:
        return production, latest
    return max(latest - 1, 1), latest


def version_choices(prompt: Prompt, *, excluding: int | None = None) -> list[tuple[int, str]]:
    """A select's choices of the prompt's versions, newest first: number and commit message."""
    versions = prompt.versions.exclude(version=excluding) if excluding else prompt.versions.all()
    rows = versions.order_by("-version").values_list("version", "message")[:MAX_VERSION_CHOICES]
    return [(number, Truncator(message or "(no message)").chars(60)) for number, message in rows]


def _version_or_latest(prompt: Prompt, number: str | None) -> PromptVersion | None:
    versions = prompt.versions.all()
    if number and number.isdigit():
        chosen = versions.filter(version=int(number)).first()
        if chosen:
            return chosen
    return versions.filter(version=prompt.latest_version).first()


def owner_note(request: HttpRequest, prompt: Prompt, *, they_may: str = "may change it") -> str:
    """Why the logged-in user may not act on ``prompt`` (empty when they may): shown above the
    forms of the prompt's pages, and of its rollouts'."""
    if actor_owns(admin_actor(request), prompt):
        return ""
    owners = ", ".join(owner_names(prompt)) or "none"
    return f"You are not an owner of “{prompt.name}”: only its owners ({owners}) or an admin {they_may}."


def _report_published(
    request: HttpRequest, model_admin: admin.ModelAdmin, version: PromptVersion, created: bool
) -> None:
    labels = ", ".join(sorted(version.labels.values_list("name", flat=True)))
    on_it = f" Labels on it: {labels}." if labels else ""
    if created:
        model_admin.message_user(request, f"Published v{version.version}.{on_it}", messages.SUCCESS)
    else:
        model_admin.message_user(
            request,
            f"Same content as v{version.version}: no new version was made.{on_it}",
            messages.WARNING,
        )


def langfuse_mirror_resume_view(
    request: HttpRequest, model_admin: admin.ModelAdmin, prompt: Prompt
) -> HttpResponse:
    """The prompt page's "Resume the Langfuse mirror" button (a POST form)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        langfuse_mirror_resume(actor=admin_actor(request), prompt_name=prompt.name, now=timezone.now())
    except DomainError as error:
        model_admin.message_user(request, domain_error_text(error), messages.ERROR)
    else:
        model_admin.message_user(
            request,
            f"The Langfuse mirror of {prompt.name} resumes: it checks the numbering again.",
            messages.SUCCESS,
        )
    return HttpResponseRedirect(prompt_url(prompt))
