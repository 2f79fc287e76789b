"""Reads of the registry: one prompt (for update, in a service's transaction), who owns it, and
the management API's lists and details, with the prefetches that keep them at a fixed number of
queries however many prompts, owners or labels there are."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet

from core.actors import Actor
from core.prompt_limits import prompts_q
from registry.diff import VersionContent, VersionDiff, version_diff
from registry.errors import LabelNotFound, PromptNotFound, VersionNotFound
from registry.models import LATEST, PROMPT_NAME_RE, Label, LangfuseMirror, Prompt, PromptVersion


def prompt_get(name: str, *, for_update: bool = False) -> Prompt:
    prompts = Prompt.objects.select_for_update() if for_update else Prompt.objects
    # A name that cannot exist is not looked up (it may hold characters PostgreSQL refuses).
    prompt = prompts.filter(name=name).first() if re.fullmatch(PROMPT_NAME_RE, name) else None
    if prompt is None:
        raise PromptNotFound(f"Prompt '{name}' does not exist.")
    return prompt


def owner_names(prompt: Prompt) -> list[str]:
    users = sorted(u.get_username() for u in prompt.owner_users.all())
    groups = sorted(f"group:{g.name}" for g in prompt.owner_groups.all())
    return users + groups


def actor_owns(actor: Actor, prompt: Prompt) -> bool:
    if actor.is_admin:
        return True
    if actor.user_id is None:
        return False
    if prompt.owner_users.filter(pk=actor.user_id).exists():
        return True
    return prompt.owner_groups.filter(user__pk=actor.user_id).exists()


def prompts_matching_owned(*, user_id: int, limits: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The names of the prompts ``limits`` matches that the user owns (also through a group),
    and of those they do not (settings.PROMPTRAMP_PROMPT_OWNERSHIP, asked by access.services)."""
    matching = Prompt.objects.filter(prompts_q(limits, "name"))
    owned_pks = Prompt.objects.filter(Q(owner_users__pk=user_id) | Q(owner_groups__user__pk=user_id)).values(
        "pk"
    )
    owned = sorted(matching.filter(pk__in=owned_pks).values_list("name", flat=True))
    not_owned = sorted(matching.exclude(pk__in=owned_pks).values_list("name", flat=True))
    return owned, not_owned


def _with_relations(prompts: QuerySet[Prompt]) -> QuerySet[Prompt]:
    return prompts.prefetch_related(
        "owner_users",
        "owner_groups",
        Prefetch("labels", queryset=Label.objects.select_related("version").order_by("name")),
    ).select_related("langfuse_mirror")


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


def langfuse_mirror_state(prompt: Prompt) -> dict[str, Any] | None:
    """How the prompt's Langfuse mirror (``registry.langfuse_mirror``) stands, for the API and the
    admin: ``state`` (waiting, pending, in_sync, retrying, stopped) and why; None when it is off."""
    if not settings.PROMPTRAMP_LANGFUSE_MIRROR:
        return None
    try:
        mirror = prompt.langfuse_mirror
    except LangfuseMirror.DoesNotExist:
        return {
            "state": "waiting",
            "reason": "mirrored (every version) at its next version or production move",
        }
    if mirror.stopped_reason:
        return {"state": "stopped", "reason": mirror.stopped_reason}
    if mirror.last_error:
        return {"state": "retrying", "reason": mirror.last_error, "attempts": mirror.attempts}
    return {"state": "pending" if mirror.due_at else "in_sync", "reason": ""}
