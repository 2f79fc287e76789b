"""Writes to the registry: prompts, versions, labels. Each is one transaction and audited; the
rules of what may be stored are in ``registry.validation``, the reads in ``registry.selectors``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from audit.actions import AuditAction
from audit.services import audit_record
from core.actors import Actor
from core.errors import Conflict, Forbidden, ValidationFailed
from core.events import event_emit
from core.state_cache import SERVING_STATE, state_changed
from registry.approvals import ensure_production_move_approved
from registry.content import content_hash
from registry.errors import AdminRequired, LabelNotFound, ProductionFrozen
from registry.models import PRODUCTION, Label, Prompt, PromptVersion
from registry.selectors import actor_owns, owner_names, prompt_get, version_detail
from registry.templating import message_texts, variables_of
from registry.validation import (
    resolve_owners,
    validate_content,
    validate_description,
    validate_git,
    validate_label_name,
    validate_prompt_name,
    validate_reason,
    validate_tags,
)

# --- ownership ------------------------------------------------------------------------------


def ensure_owner(actor: Actor, prompt: Prompt) -> None:
    if not actor_owns(actor, prompt):
        raise Forbidden(f"Only the owners of '{prompt.name}' or an admin may change it.")


# --- prompts --------------------------------------------------------------------------------


def prompt_create(
    *,
    actor: Actor,
    name: object,
    kind: object = "text",
    description: object = "",
    tags: object = (),
    owners: object = (),
    require_second_approver: object = False,
) -> Prompt:
    name = validate_prompt_name(name)
    second_approver = _flag(require_second_approver)
    if kind not in Prompt.Kind.values:
        raise ValidationFailed(
            "kind must be 'text' or 'chat'.", details={"kind": kind if isinstance(kind, str) else None}
        )
    description = validate_description(description)
    clean_tags = validate_tags(list(tags) if isinstance(tags, tuple) else tags)
    users, groups = resolve_owners(list(owners) if isinstance(owners, tuple) else owners)
    with transaction.atomic():
        try:
            # The unique name decides, also between concurrent creates (no check-then-act).
            with transaction.atomic():
                prompt = Prompt.objects.create(
                    name=name,
                    kind=kind,
                    description=description,
                    tags=clean_tags,
                    require_second_approver=second_approver,
                )
        except IntegrityError as exc:
            raise Conflict(f"Prompt '{name}' already exists.", code="prompt_exists") from exc
        if actor.user_id is not None and actor.user_id not in {u.pk for u in users}:
            users.append(get_user_model().objects.get(pk=actor.user_id))
        prompt.owner_users.set(users)
        prompt.owner_groups.set(groups)
        audit_record(
            actor=actor,
            action=AuditAction.PROMPT_CREATE,
            prompt_name=name,
            object_type="prompt",
            object_id=prompt.pk,
            data={
                "kind": kind,
                "tags": clean_tags,
                "owners": owner_names(prompt),
                "require_second_approver": second_approver,
            },
        )
        event_emit(
            name="prompt.created",
            text=f"promptramp: prompt {name} ({kind}) created by {actor.name}",
            prompt=name,
            data={
                "kind": kind,
                "description": description,
                "owners": owner_names(prompt),
                "actor": actor.name,
            },
        )
        state_changed(SERVING_STATE, [name])
    return prompt


class _Unchanged:
    """The value of a prompt_update argument that was not given."""


UNCHANGED: Any = _Unchanged()


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed("'require_second_approver' must be true or false.")
    return value


def prompt_update(
    *,
    actor: Actor,
    prompt_name: str,
    description: object = UNCHANGED,
    tags: object = UNCHANGED,
    owners: object = UNCHANGED,
    require_second_approver: object = UNCHANGED,
) -> Prompt:
    """Change a prompt's description, tags, owners or second approver (owners or an admin only; a
    prompt keeps at least one owner; only an admin turns the second approver off). Audited with
    each changed field's old and new value; no change, no entry."""
    clean_description = description if description is UNCHANGED else validate_description(description)
    clean_tags = tags if tags is UNCHANGED else validate_tags(tags)
    second_approver = (
        require_second_approver if require_second_approver is UNCHANGED else _flag(require_second_approver)
    )
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        changes: dict[str, dict[str, Any]] = {}
        if second_approver is not UNCHANGED and second_approver != prompt.require_second_approver:
            if not second_approver and not actor.is_admin:
                raise AdminRequired(
                    f"Only an admin (a superuser's session or an 'admin' key) may turn off the second "
                    f"approver of '{prompt.name}'. Nothing was changed."
                )
            changes["require_second_approver"] = {
                "from": prompt.require_second_approver,
                "to": second_approver,
            }
            prompt.require_second_approver = second_approver
        if clean_description is not UNCHANGED and clean_description != prompt.description:
            changes["description"] = {"from": prompt.description, "to": clean_description}
            prompt.description = clean_description
        if clean_tags is not UNCHANGED and clean_tags != prompt.tags:
            changes["tags"] = {"from": prompt.tags, "to": clean_tags}
            prompt.tags = clean_tags
        if owners is not UNCHANGED:
            users, groups = resolve_owners(owners)
            if not users and not groups:
                raise ValidationFailed("A prompt keeps at least one owner.")
            before = owner_names(prompt)
            prompt.owner_users.set(users)
            prompt.owner_groups.set(groups)
            after = owner_names(prompt)
            if after != before:
                changes["owners"] = {"from": before, "to": after}
        if changes:
            fields = [f for f in ("description", "tags", "require_second_approver") if f in changes]
            prompt.save(update_fields=[*fields, "updated_at"])
            audit_record(
                actor=actor,
                action=AuditAction.PROMPT_UPDATE,
                prompt_name=prompt.name,
                object_type="prompt",
                object_id=prompt.pk,
                data={"changes": changes},
            )
    return prompt


# --- versions -------------------------------------------------------------------------------


def version_create(
    *,
    actor: Actor,
    prompt_name: str,
    template: object = None,
    messages: object = None,
    model: object = "",
    config: object = None,
    message: object = "",
    git_commit: object = None,
    git_tag: object = None,
    labels: Sequence[object] = (),
) -> tuple[PromptVersion, bool]:
    """Publish a version. Returns (version, created): content equal to the latest version's
    returns the latest (created False) and still applies the labels asked for. On a prompt that
    requires a second approver, ``production`` among them is refused when the actor is the
    author of the version it would move to (a new version's author is the actor)."""
    if not isinstance(message, str) or len(message) > 10_000:
        raise ValidationFailed("'message' must be a string of at most 10,000 characters.")
    git_commit, git_tag = validate_git(git_commit, git_tag)
    if not isinstance(labels, (list, tuple)) or len(labels) > 20:
        raise ValidationFailed("'labels' must be a list of label names.")
    label_names = list(dict.fromkeys(validate_label_name(label) for label in labels))
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        template, clean_messages, model, config = validate_content(
            prompt.kind, template, messages, model, config
        )
        if PRODUCTION in label_names:
            _ensure_production_movable(prompt)
        digest = content_hash(
            kind=prompt.kind, template=template, messages=clean_messages, model=model, config=config
        )
        latest = prompt.versions.filter(version=prompt.latest_version).first()
        created = latest is None or latest.content_hash != digest
        if created:
            prompt.latest_version += 1
            prompt.save(update_fields=["latest_version", "updated_at"])
            texts = [template] if template is not None else message_texts(clean_messages or [])
            version = PromptVersion.objects.create(
                prompt=prompt,
                version=prompt.latest_version,
                template=template,
                messages=clean_messages,
                model=model,
                config=config,
                variables=variables_of(texts),
                author_id=actor.user_id,
                author_name=actor.name,
                message=message,
                git_commit=git_commit,
                git_tag=git_tag,
                content_hash=digest,
            )
            audit_record(
                actor=actor,
                action=AuditAction.VERSION_CREATE,
                prompt_name=prompt.name,
                object_type="version",
                object_id=version.version,
                reason=message,
                data={"version": version.version, "content_hash": digest, "git_commit": git_commit},
            )
            event_emit(
                name="version.created",
                text=f"promptramp: {prompt.name} v{version.version} published by {actor.name}"
                + (f": {message}" if message else ""),
                prompt=prompt.name,
                data={
                    "version": version.version,
                    "content_hash": digest,
                    "message": message,
                    "git_commit": git_commit,
                    "actor": actor.name,
                },
            )
            if version.version == 1 and PRODUCTION not in label_names:
                label_names.insert(0, PRODUCTION)
        else:
            assert latest is not None
            version = latest
        for label in label_names:
            if label == PRODUCTION:
                ensure_production_move_approved(actor=actor, prompt=prompt, version=version)
            _label_set(actor=actor, prompt=prompt, label=label, version=version, reason=message)
        state_changed(SERVING_STATE, [prompt.name])
    return version, created


# --- labels ---------------------------------------------------------------------------------


@functools.cache
def production_holders() -> list[Callable[[Prompt], str | None]]:
    """Who may hold a prompt's ``production`` label, so that only they move it (the rollout
    controller, while a rollout is active): the functions named in
    settings.PROMPTRAMP_PRODUCTION_HOLDERS, each answering why it holds it, or None. The apps
    above the registry plug in there; the registry imports none of them."""
    return [import_string(path) for path in settings.PROMPTRAMP_PRODUCTION_HOLDERS]


def _ensure_production_movable(prompt: Prompt) -> None:
    for holder in production_holders():
        held = holder(prompt)
        if held:
            raise ProductionFrozen(held)


def _label_set(*, actor: Actor, prompt: Prompt, label: str, version: PromptVersion, reason: str) -> Label:
    current = Label.objects.select_for_update().filter(prompt=prompt, name=label).first()
    previous = current.version.version if current else None
    if current is None:
        current = Label.objects.create(prompt=prompt, name=label, version=version)
    elif current.version_id != version.pk:
        current.version = version
        current.save(update_fields=["version", "updated_at"])
    audit_record(
        actor=actor,
        action=AuditAction.LABEL_MOVE,
        prompt_name=prompt.name,
        object_type="label",
        object_id=label,
        reason=reason,
        data={"label": label, "from_version": previous, "to_version": version.version},
    )
    if previous != version.version:
        moved = f"moved from v{previous} to v{version.version}" if previous else f"set to v{version.version}"
        event_emit(
            name="label.moved",
            text=f"promptramp: {prompt.name} label {label} {moved} by {actor.name}"
            + (f": {reason}" if reason else ""),
            prompt=prompt.name,
            data={
                "label": label,
                "from_version": previous,
                "to_version": version.version,
                "reason": reason,
                "actor": actor.name,
            },
        )
    return current


def label_move(
    *,
    actor: Actor,
    prompt_name: str,
    label: object,
    version: object,
    reason: object = "",
    system: bool = False,
) -> Label:
    """Point a label at a version. ``system`` is for the rollout controller, the one writer that
    may move 'production' while a rollout is active (and, its rollout started by a second
    approver when the prompt needs one, needs none itself)."""
    label = validate_label_name(label)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValidationFailed("'version' must be a positive integer.")
    reason = validate_reason(reason)
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        if not system:
            ensure_owner(actor, prompt)
            if label == PRODUCTION:
                _ensure_production_movable(prompt)
        target = version_detail(prompt=prompt, number=version)
        if label == PRODUCTION and not system:
            ensure_production_move_approved(actor=actor, prompt=prompt, version=target)
        moved = _label_set(actor=actor, prompt=prompt, label=label, version=target, reason=reason)
        state_changed(SERVING_STATE, [prompt.name])
    return moved


def label_delete(*, actor: Actor, prompt_name: str, label: object, reason: object = "") -> None:
    label = validate_label_name(label)
    reason = validate_reason(reason)
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        if label == PRODUCTION:
            raise Conflict("'production' cannot be deleted; move it to another version instead.")
        current = Label.objects.filter(prompt=prompt, name=label).select_related("version").first()
        if current is None:
            raise LabelNotFound(f"Prompt '{prompt.name}' has no label '{label}'.")
        audit_record(
            actor=actor,
            action=AuditAction.LABEL_DELETE,
            prompt_name=prompt.name,
            object_type="label",
            object_id=label,
            reason=reason,
            data={"label": label, "from_version": current.version.version},
        )
        current.delete()
        state_changed(SERVING_STATE, [prompt.name])
