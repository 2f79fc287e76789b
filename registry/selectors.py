"""Reads of the registry for the management API, with the prefetches that keep them at a fixed
number of queries however many prompts, owners or labels there are."""

from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet

from registry.diff import VersionContent, VersionDiff, version_diff
from registry.errors import LabelNotFound, VersionNotFound
from registry.models import LATEST, Label, Prompt, PromptVersion
from registry.services import prompt_get


def _with_relations(prompts: QuerySet[Prompt]) -> QuerySet[Prompt]:
    return prompts.prefetch_related(
        "owner_users",
        "owner_groups",
        Prefetch("labels", queryset=Label.objects.select_related("version").order_by("name")),
    )


def prompt_list(
    *, tag: str | None = None, owner: str | None = None, search: str | None = None
) -> QuerySet[Prompt]:
    """Prompts by name. ``owner`` is a user name (prompts the user owns, also through a group) or
    ``group:NAME``; ``search`` looks in names and descriptions."""
    prompts = Prompt.objects.all()
    if tag:
        prompts = prompts.filter(tags__contains=[tag])
    if owner:
        if owner.startswith("group:"):
            prompts = prompts.filter(owner_groups__name=owner.removeprefix("group:"))
        else:
            owned = Prompt.objects.filter(
                Q(owner_users__username=owner) | Q(owner_groups__user__username=owner)
            )
            prompts = prompts.filter(pk__in=owned.values("pk"))
    if search:
        prompts = prompts.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return _with_relations(prompts.order_by("name"))


def prompt_detail(*, name: str) -> Prompt:
    return _with_relations(Prompt.objects.filter(pk=prompt_get(name).pk)).get()


def version_list(*, prompt: Prompt) -> QuerySet[PromptVersion]:
    """The prompt's versions, newest first, each with the labels that point at it."""
    return (
        PromptVersion.objects.filter(prompt=prompt)
        .select_related("prompt")
        .prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("name")))
        .order_by("-version")
    )


def version_detail(*, prompt: Prompt, number: int) -> PromptVersion:
    version = version_list(prompt=prompt).filter(version=number).first()
    if version is None:
        raise VersionNotFound(f"Prompt '{prompt.name}' has no version {number}.")
    return version


def version_by_label(*, prompt: Prompt, label: str) -> PromptVersion:
    """The version a label points at; ``latest`` is the highest version."""
    if label == LATEST:
        version = version_list(prompt=prompt).first()
        if version is None:
            raise VersionNotFound(f"Prompt '{prompt.name}' has no versions yet.")
        return version
    version = version_list(prompt=prompt).filter(labels__name=label).first()
    if version is None:
        raise LabelNotFound(f"Prompt '{prompt.name}' has no label '{label}'.")
    return version


def version_content(version: PromptVersion) -> VersionContent:
    return VersionContent(
        version=version.version,
        template=version.template,
        messages=version.messages,
        model=version.model,
        config=version.config,
    )


def version_compare(*, prompt: Prompt, number: int, against: int) -> VersionDiff:
    """What changed from version ``against`` to version ``number``."""
    new = version_detail(prompt=prompt, number=number)
    old = version_detail(prompt=prompt, number=against)
    return version_diff(version_content(old), version_content(new))
