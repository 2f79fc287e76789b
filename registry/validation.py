"""The rules of what the registry stores, checked before anything is written (pure checks of
plain values, but for owners, which must exist): each raises ValidationFailed naming what is
wrong."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.errors import ValidationFailed
from core.json_values import nesting_depth
from registry.models import LABEL_NAME_RE, LATEST, PROMPT_NAME_RE, Prompt

MAX_CONTENT_BYTES = 256 * 1024
MAX_CONFIG_BYTES = 64 * 1024
MAX_CONFIG_NESTING = 32
MAX_MESSAGES = 500
ROLE_RE = re.compile(r"^[a-z_]{1,32}$")
GIT_COMMIT_RE = re.compile(r"^[0-9a-f]{7,64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


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


def validate_description(description: object) -> str:
    if not isinstance(description, str) or len(description) > 10_000:
        raise ValidationFailed("description must be a string of at most 10,000 characters.")
    return description


def validate_reason(reason: object) -> str:
    if not isinstance(reason, str) or len(reason) > 10_000:
        raise ValidationFailed("'reason' must be a string of at most 10,000 characters.")
    return reason


def validate_tags(tags: object) -> list[str]:
    if not isinstance(tags, list) or len(tags) > 50:
        raise ValidationFailed("tags must be a list of at most 50 strings.")
    for tag in tags:
        if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
            raise ValidationFailed(
                "A tag is 1-64 characters of letters, digits, '_', '.', ':' and '-'.",
                details={"tag": tag if isinstance(tag, str) else None},
            )
    return sorted(set(tags))


def validate_content(
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
        clean_messages = validate_messages(messages)
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


def validate_messages(messages: object) -> list[dict[str, str]]:
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


def validate_git(git_commit: object, git_tag: object) -> tuple[str | None, str | None]:
    if git_commit is not None and (
        not isinstance(git_commit, str) or not GIT_COMMIT_RE.fullmatch(git_commit)
    ):
        raise ValidationFailed("'git_commit' must be a hexadecimal commit id (7 to 64 characters).")
    if git_tag is not None and (not isinstance(git_tag, str) or not 0 < len(git_tag) <= 200):
        raise ValidationFailed("'git_tag' must be a string of 1 to 200 characters.")
    return git_commit, git_tag


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
