"""API keys and the admin user: every write goes through here and is audited.

Saving or deleting a key or a user announces the change to every process's key cache
(``access.announcements``), whichever path saved it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from access.models import SCOPES, ApiKey
from audit.actions import AuditAction
from audit.services import audit_record
from core.actors import Actor
from core.errors import Forbidden, NotFound, ValidationFailed
from core.prompt_limits import PromptLimits, PromptNotAllowed, normalize_prompt_limits, prompt_allowed

KEY_PREFIX = "pr_"
# The scopes a user who is not an admin may give the keys they create for themselves.
SELF_SERVICE_SCOPES = frozenset({"read", "ingest"})


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def normalize_scopes(scopes: object) -> list[str]:
    """A list (or tuple) of scope names -> the sorted distinct scopes; anything else is a 400."""
    if not isinstance(scopes, (list, tuple)) or len(scopes) > 20:
        raise ValidationFailed(f"Scopes must be a list of {', '.join(SCOPES)}.")
    names = set()
    for scope in scopes:
        if not isinstance(scope, str):
            raise ValidationFailed(f"Scopes must be a list of {', '.join(SCOPES)}.")
        if scope.strip():
            names.add(scope.strip())
    cleaned = sorted(names)
    unknown = [s for s in cleaned if s not in SCOPES]
    if unknown or not cleaned:
        raise ValidationFailed(
            f"Scopes must be a non-empty subset of {', '.join(SCOPES)}.", details={"scopes": unknown}
        )
    return cleaned


def apikey_create(
    *,
    actor: Actor,
    name: object,
    user: User | object,
    scopes: object,
    prompts: object = None,
    within: PromptLimits = None,
) -> tuple[ApiKey, str]:
    """Create a key for ``user`` (a user or a user name), limited to ``prompts`` (names and
    prefixes ending in '*'; None: every prompt); returns it with the raw key, which is never
    stored and never shown again.

    An admin may create any key. Anyone else only ``read`` and ``ingest`` keys for themselves,
    limited to prompts they own now (and that ``within``, the limits of the key asking, allows):
    each prefix is expanded, here, to the names of the prompts it matches, so it never reaches
    a prompt created later; a pattern matching a prompt they do not own is a 403."""
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 100:
        raise ValidationFailed("A key needs a name of 1 to 100 characters.")
    scope_list = normalize_scopes(scopes)
    limits = normalize_prompt_limits(prompts)
    user = _user_of(user)
    if not actor.is_admin:
        limits = _owned_prompts(actor=actor, user=user, scopes=scope_list, limits=limits, within=within)
    # "pr_<public id>_<secret>": only the public id is kept in clear (to recognise a key in a
    # list); of the secret, only the hash of the whole key is stored.
    prefix = KEY_PREFIX + secrets.token_hex(4)
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = ApiKey.objects.create(
            name=name,
            user=user,
            prefix=prefix,
            key_hash=hash_key(raw),
            scopes=scope_list,
            prompts=None if limits is None else list(limits),
        )
        audit_record(
            actor=actor,
            action=AuditAction.APIKEY_CREATE,
            object_type="apikey",
            object_id=key.pk,
            data={
                "name": name,
                "user": user.get_username(),
                "scopes": scope_list,
                "prompts": None if limits is None else list(limits),
            },
        )
    return key, raw


def _owned_prompts(
    *, actor: Actor, user: User, scopes: list[str], limits: PromptLimits, within: PromptLimits
) -> tuple[str, ...]:
    """The names a key created by ``actor`` (not an admin) is limited to: ``limits`` expanded
    to the prompts ``user`` (the actor) owns; Forbidden for anything beyond that."""
    if user.pk != actor.user_id:
        raise Forbidden(
            "Only an admin may create keys for other users.", details={"user": user.get_username()}
        )
    beyond = sorted(set(scopes) - SELF_SERVICE_SCOPES)
    if beyond:
        raise Forbidden(
            "Only an admin may create keys with these scopes; yours may carry read and ingest.",
            details={"scopes": beyond},
        )
    if limits is None:
        raise ValidationFailed(
            "Name the prompts the key may touch in 'prompts' (names, or prefixes ending in '*').",
            details={"prompts": None},
        )
    ownership = import_string(settings.PROMPTRAMP_PROMPT_OWNERSHIP)
    owned, not_owned = ownership(user_id=user.pk, limits=limits)
    exact_unknown = [p for p in limits if not p.endswith("*") and p not in owned and p not in not_owned]
    refused = sorted(
        {*not_owned, *exact_unknown, *(name for name in owned if not prompt_allowed(within, name))}
    )
    if refused:
        raise PromptNotAllowed(
            "A key you create may only reach prompts you own (and your key may reach).",
            details={"prompts": refused},
        )
    if not owned:
        raise ValidationFailed("'prompts' matches no prompt you own.", details={"prompts": list(limits)})
    return tuple(sorted(owned))


def _user_of(user: User | object) -> User:
    if isinstance(user, User):
        return user
    found = None
    if isinstance(user, str) and 0 < len(user) <= 150 and "\x00" not in user:
        found = User.objects.filter(username=user).first()
    if found is None:
        raise ValidationFailed("No such user.", details={"user": user if isinstance(user, str) else None})
    return found


def apikey_revoke(*, actor: Actor, key_id: int, reason: object = "") -> ApiKey:
    """Revoke a key (audited once; revoking it again changes nothing). Every process stops
    accepting it within half a second (core.state_cache)."""
    if not isinstance(reason, str) or len(reason) > 10_000:
        raise ValidationFailed("'reason' must be a string of at most 10,000 characters.")
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=key_id).first()
        if key is None:
            raise NotFound(f"API key {key_id} does not exist.")
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                action=AuditAction.APIKEY_REVOKE,
                object_type="apikey",
                object_id=key.pk,
                reason=reason,
                data={"name": key.name},
            )
    return key


def user_delete(*, actor: Actor, user: User) -> None:
    """Delete ``user`` and their API keys (audited, naming the keys). What they did stays in the
    audit log and the registry under their name; the references to them become NULL."""
    with transaction.atomic():
        keys = list(user.api_keys.values_list("name", flat=True))
        audit_record(
            actor=actor,
            action=AuditAction.USER_DELETE,
            object_type="user",
            object_id=user.pk,
            data={"username": user.get_username(), "api_keys_deleted": keys},
        )
        user.delete()


def admin_ensure(
    *, username: str, password: str | None, new_password: Callable[[], str]
) -> tuple[User, bool]:
    """Make sure the superuser ``username`` exists. With ``password`` it is set to it; without,
    an existing user keeps the password it has (changed in the admin, say) and a new one gets
    ``new_password()``. Returns (user, created)."""
    with transaction.atomic():
        user, created = User.objects.select_for_update().get_or_create(username=username)
        if created and password is None:
            password = new_password()
        changed = not user.is_superuser or (password is not None and not user.check_password(password))
        if changed:
            user.is_staff = user.is_superuser = user.is_active = True
            if password is not None:
                user.set_password(password)
            user.save()
            audit_record(
                actor=Actor.system(),
                action=AuditAction.ADMIN_ENSURE,
                object_type="user",
                object_id=user.pk,
                data={"username": username, "created": created},
            )
    return user, created
