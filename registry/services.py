"""Writes to the registry: prompts, versions, labels. Each is one transaction and audited."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from audit.actions import AuditAction
from audit.services import audit_record
from core.actors import Actor
from core.errors import Conflict, Forbidden, ValidationFailed
from core.json_values import nesting_depth
from core.state_cache import SERVING_STATE, state_changed
from registry.content import content_hash
from registry.errors import LabelNotFound, ProductionFrozen, PromptNotFound, VersionNotFound
from registry.models import LABEL_NAME_RE, LATEST, PRODUCTION, PROMPT_NAME_RE, Label, Prompt, PromptVersion
from registry.templating import message_texts, variables_of

MAX_CONTENT_BYTES = 256 * 1024
MAX_CONFIG_BYTES = 64 * 1024
MAX_CONFIG_NESTING = 32
MAX_MESSAGES = 500
ROLE_RE = re.compile(r"^[a-z_]{1,32}$")
GIT_COMMIT_RE = re.compile(r"^[0-9a-f]{7,64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


# --- validation ---------------------------------------------------------------------------


def validate_prompt_name(name: object) -> str:
    if not isinstance(name, str) or not re.fullmatch(PROMPT_NAME_RE, name):
        raise ValidationFailed(
            "A prompt name is 1-128 characters of a-z, 0-9, '.', '_' and '-', starting with a "
            "letter or digit.",
            details={"name": name if isinstance(name, str) else None},
        )
    return name


def validate_label_name(name: object, *, allow_latest: bool = False) -> str:
    if not isinstance(name, str) or not re.fullmatch(LABEL_NAME_RE, name):
        raise ValidationFailed(
            "A label name is 1-64 characters of a-z, 0-9, '_' and '-', starting with a letter.",
            details={"label": name if isinstance(name, str) else None},
        )
    if name == LATEST and not allow_latest:
        raise ValidationFailed("'latest' is reserved: it always means the highest version.")
    return name


def _validate_description(description: object) -> str:
    if not isinstance(description, str) or len(description) > 10_000:
        raise ValidationFailed("description must be a string of at most 10,000 characters.")
    return description


def _validate_reason(reason: object) -> str:
    if not isinstance(reason, str) or len(reason) > 10_000:
        raise ValidationFailed("'reason' must be a string of at most 10,000 characters.")
    return reason


def _validate_tags(tags: object) -> list[str]:
    if not isinstance(tags, list) or len(tags) > 50:
        raise ValidationFailed("tags must be a list of at most 50 strings.")
    for tag in tags:
        if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
            raise ValidationFailed(
                "A tag is 1-64 characters of letters, digits, '_', '.', ':' and '-'.",
                details={"tag": tag if isinstance(tag, str) else None},
            )
    return sorted(set(tags))


def _validate_content(
    kind: str, template: object, messages: object, model: object, config: object
) -> tuple[str | None, list[dict[str, str]] | None, str, dict[str, Any]]:
    if kind == Prompt.Kind.TEXT:
        if messages is not None:
            raise ValidationFailed("A text prompt takes 'template', not 'messages'.")
        if not isinstance(template, str) or not template:
            raise ValidationFailed("'template' must be a non-empty string.")
        if len(template.encode()) > MAX_CONTENT_BYTES:
            raise ValidationFailed("'template' is larger than 256 KB.", code="too_large")
        clean_messages = None
    else:
        if template is not None:
            raise ValidationFailed("A chat prompt takes 'messages', not 'template'.")
        clean_messages = _validate_messages(messages)
        template = None
    if model is None:
        model = ""
    if not isinstance(model, str) or len(model) > 200:
        raise ValidationFailed("'model' must be a string of at most 200 characters.")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValidationFailed("'config' must be a JSON object.")
    if nesting_depth(config) > MAX_CONFIG_NESTING:
        raise ValidationFailed(
            f"'config' nests lists and objects more than {MAX_CONFIG_NESTING} levels deep."
        )
    if len(json.dumps(config)) > MAX_CONFIG_BYTES:
        raise ValidationFailed("'config' is larger than 64 KB.", code="too_large")
    return template, clean_messages, model, config


def _validate_messages(messages: object) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise ValidationFailed(f"'messages' must be a list of 1 to {MAX_MESSAGES} messages.")
    clean = []
    total = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ValidationFailed(
                "Each message is an object with exactly 'role' and 'content'.",
                details={"index": index},
            )
        role, content = message["role"], message["content"]
        if not isinstance(role, str) or not ROLE_RE.fullmatch(role):
            raise ValidationFailed(
                "A message role is 1-32 characters of a-z and '_'.", details={"index": index}
            )
        if not isinstance(content, str):
            raise ValidationFailed("A message content must be a string.", details={"index": index})
        total += len(content.encode())
        clean.append({"role": role, "content": content})
    if total > MAX_CONTENT_BYTES:
        raise ValidationFailed("'messages' are larger than 256 KB in all.", code="too_large")
    return clean


def _validate_git(git_commit: object, git_tag: object) -> tuple[str | None, str | None]:
    if git_commit is not None and (
        not isinstance(git_commit, str) or not GIT_COMMIT_RE.fullmatch(git_commit)
    ):
        raise ValidationFailed("'git_commit' must be a hexadecimal commit id (7 to 64 characters).")
    if git_tag is not None and (not isinstance(git_tag, str) or not 0 < len(git_tag) <= 200):
        raise ValidationFailed("'git_tag' must be a string of 1 to 200 characters.")
    return git_commit, git_tag


# --- ownership ------------------------------------------------------------------------------


def resolve_owners(owners: object) -> tuple[list[Any], list[Group]]:
    """Split ["alice", "group:support"] into users and groups; unknown names are an error."""
    if not isinstance(owners, list) or len(owners) > 100:
        raise ValidationFailed("owners must be a list of user names and 'group:NAME' entries.")
    User = get_user_model()
    user_names, group_names = [], []
    for owner in owners:
        if not isinstance(owner, str) or not owner:
            raise ValidationFailed("Each owner is a user name or 'group:NAME'.")
        if owner.startswith("group:"):
            group_names.append(owner.removeprefix("group:"))
        else:
            user_names.append(owner)
    users = list(User.objects.filter(username__in=user_names))
    groups = list(Group.objects.filter(name__in=group_names))
    unknown = sorted(set(user_names) - {u.get_username() for u in users}) + sorted(
        f"group:{g}" for g in set(group_names) - {g.name for g in groups}
    )
    if unknown:
        raise ValidationFailed("Unknown owners.", details={"owners": unknown})
    return users, groups


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


def ensure_owner(actor: Actor, prompt: Prompt) -> None:
    if not actor_owns(actor, prompt):
        raise Forbidden(f"Only the owners of '{prompt.name}' or an admin may change it.")


# --- prompts --------------------------------------------------------------------------------


def prompt_get(name: str, *, for_update: bool = False) -> Prompt:
    prompts = Prompt.objects.select_for_update() if for_update else Prompt.objects
    # A name that cannot exist is not looked up (it may hold characters PostgreSQL refuses).
    prompt = prompts.filter(name=name).first() if re.fullmatch(PROMPT_NAME_RE, name) else None
    if prompt is None:
        raise PromptNotFound(f"Prompt '{name}' does not exist.")
    return prompt


def prompt_create(
    *,
    actor: Actor,
    name: object,
    kind: object = "text",
    description: object = "",
    tags: object = (),
    owners: object = (),
) -> Prompt:
    name = validate_prompt_name(name)
    if kind not in Prompt.Kind.values:
        raise ValidationFailed(
            "kind must be 'text' or 'chat'.", details={"kind": kind if isinstance(kind, str) else None}
        )
    description = _validate_description(description)
    clean_tags = _validate_tags(list(tags) if isinstance(tags, tuple) else tags)
    users, groups = resolve_owners(list(owners) if isinstance(owners, tuple) else owners)
    with transaction.atomic():
        try:
            # The unique name decides, also between concurrent creates (no check-then-act).
            with transaction.atomic():
                prompt = Prompt.objects.create(name=name, kind=kind, description=description, tags=clean_tags)
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
            data={"kind": kind, "tags": clean_tags, "owners": owner_names(prompt)},
        )
        state_changed(SERVING_STATE, [name])
    return prompt


class _Unchanged:
    """The value of a prompt_update argument that was not given."""


UNCHANGED: Any = _Unchanged()


def prompt_update(
    *,
    actor: Actor,
    prompt_name: str,
    description: object = UNCHANGED,
    tags: object = UNCHANGED,
    owners: object = UNCHANGED,
) -> Prompt:
    """Change a prompt's description, tags or owners (owners or an admin only; a prompt keeps at
    least one owner). Audited with each changed field's old and new value; no change, no entry."""
    clean_description = description if description is UNCHANGED else _validate_description(description)
    clean_tags = tags if tags is UNCHANGED else _validate_tags(tags)
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        changes: dict[str, dict[str, Any]] = {}
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
            prompt.save(update_fields=[f for f in ("description", "tags") if f in changes] + ["updated_at"])
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
    returns the latest (created False) and still applies the labels asked for."""
    if not isinstance(message, str) or len(message) > 10_000:
        raise ValidationFailed("'message' must be a string of at most 10,000 characters.")
    git_commit, git_tag = _validate_git(git_commit, git_tag)
    if not isinstance(labels, (list, tuple)) or len(labels) > 20:
        raise ValidationFailed("'labels' must be a list of label names.")
    label_names = list(dict.fromkeys(validate_label_name(label) for label in labels))
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        template, clean_messages, model, config = _validate_content(
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
            if version.version == 1 and PRODUCTION not in label_names:
                label_names.insert(0, PRODUCTION)
        else:
            assert latest is not None
            version = latest
        for label in label_names:
            _label_set(actor=actor, prompt=prompt, label=label, version=version, reason=message)
        state_changed(SERVING_STATE, [prompt.name])
    return version, created


def version_get(prompt: Prompt, number: int) -> PromptVersion:
    version = prompt.versions.filter(version=number).first()
    if version is None:
        raise VersionNotFound(f"Prompt '{prompt.name}' has no version {number}.")
    return version


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
    may move 'production' while a rollout is active."""
    label = validate_label_name(label)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValidationFailed("'version' must be a positive integer.")
    reason = _validate_reason(reason)
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        if not system:
            ensure_owner(actor, prompt)
            if label == PRODUCTION:
                _ensure_production_movable(prompt)
        target = version_get(prompt, version)
        moved = _label_set(actor=actor, prompt=prompt, label=label, version=target, reason=reason)
        state_changed(SERVING_STATE, [prompt.name])
    return moved


def label_delete(*, actor: Actor, prompt_name: str, label: object, reason: object = "") -> None:
    label = validate_label_name(label)
    reason = _validate_reason(reason)
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
