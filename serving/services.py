"""Writes of overrides. Each is one transaction on the prompt's row (so the per-prompt limit
and the one-override-per-match rule hold between concurrent writers), audited, and a change of
the serving state (``state_changed``): every process serves it within 0.5 s, and at once to a
client that asks with X-Promptramp-Generation. Every change goes through ``_override_changed``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.actions import AuditAction
from audit.services import audit_record
from core.actors import Actor
from core.errors import ValidationFailed
from core.events import event_emit
from core.state_cache import SERVING_STATE, state_changed
from registry.approvals import ensure_override_approved
from registry.models import Prompt, PromptVersion
from registry.selectors import prompt_get, version_detail
from registry.services import ensure_owner
from registry.validation import validate_reason
from serving.attributes import MAX_VALUE_LENGTH, NAME
from serving.errors import OverrideExists, OverrideNotFound, TooManyOverrides
from serving.models import Override
from serving.selectors import MAX_OVERRIDES, applying

MAX_UNIT_LENGTH = 512


def override_create(
    *,
    actor: Actor,
    prompt_name: str,
    match: object,
    version: object = None,
    arm: object = None,
    reason: object = "",
    expires_at: object = None,
) -> Override:
    """Serve ``match`` (``{"unit": …}`` or ``{"attribute": …, "value": …}``) a version or an arm
    of the active rollout. 409 when an applying override has the same match, or when the prompt
    has MAX_OVERRIDES applying already; expired overrides of the prompt are removed here. On a
    prompt that requires a second approver, a version is served only by someone other than its
    author (registry.approvals); an arm needs none."""
    fields = _match_fields(match)
    reason = validate_reason(reason)
    now = timezone.now()
    expires = _expires_at(expires_at, now)
    if (version is None) == (arm is None):
        raise ValidationFailed("Give exactly one of 'version' and 'arm'.", details={"field": "version"})
    if arm is not None and arm not in Override.Arm.values:
        raise ValidationFailed('\'arm\' must be "candidate" or "baseline".', details={"field": "arm"})
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or not 0 < version < 2**31
    ):
        raise ValidationFailed("'version' must be a positive integer.", details={"field": "version"})
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        target: PromptVersion | None = (
            version_detail(prompt=prompt, number=version) if isinstance(version, int) else None
        )
        if target is not None:
            ensure_override_approved(actor=actor, prompt=prompt, version=target)
        Override.objects.filter(prompt=prompt).exclude(applying(now)).delete()
        live = Override.objects.filter(prompt=prompt)
        same = live.filter(**fields).first()
        if same is not None:
            raise OverrideExists(
                f"Override {same.pk} already applies to this match; expire it first.",
                details={"override_id": same.pk},
            )
        if live.count() >= MAX_OVERRIDES:
            raise TooManyOverrides(
                f"Prompt '{prompt.name}' has {MAX_OVERRIDES} overrides, the most it may have.",
                details={"max_overrides": MAX_OVERRIDES},
            )
        override = Override.objects.create(
            prompt=prompt,
            version=target,
            arm=arm or "",
            reason=reason,
            expires_at=expires,
            created_by_id=actor.user_id,
            created_by_name=actor.name,
            **fields,
        )
        _override_changed(actor=actor, prompt=prompt, override=override, created=True, reason=reason)
    return override


def override_delete(*, actor: Actor, prompt_name: str, override_id: int, reason: object = "") -> None:
    """End an override now (the admin's "expire"): it stops applying everywhere within 0.5 s."""
    reason = validate_reason(reason)
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        override = Override.objects.filter(prompt=prompt, pk=override_id).select_related("version").first()
        if override is None:
            raise OverrideNotFound(f"Prompt '{prompt.name}' has no override {override_id}.")
        _override_changed(actor=actor, prompt=prompt, override=override, created=False, reason=reason)
        override.delete()


def _override_changed(
    *, actor: Actor, prompt: Prompt, override: Override, created: bool, reason: str
) -> None:
    """What every change of an override does, in the change's transaction: the audit entry, the
    serving state's change and the ``override.changed`` event."""
    data: dict[str, Any] = {
        "match": override.match,
        "version": override.version.version if override.version else None,
        "arm": override.arm or None,
        "expires_at": override.expires_at.isoformat() if override.expires_at else None,
    }
    audit_record(
        actor=actor,
        action=AuditAction.OVERRIDE_CREATE if created else AuditAction.OVERRIDE_DELETE,
        prompt_name=prompt.name,
        object_type="override",
        object_id=override.pk,
        reason=reason,
        data=data,
    )
    state_changed(SERVING_STATE, [prompt.name])
    served = f"v{data['version']}" if data["version"] is not None else f"the {data['arm']} arm"
    event_emit(
        name="override.changed",
        prompt=prompt.name,
        text=f"promptramp: {prompt.name} override {override.pk} ({_match_text(override.match)} → {served}) "
        f"{'added' if created else 'ended'} by {actor.name}" + (f": {reason}" if reason else ""),
        data={
            **data,
            "override_id": override.pk,
            "change": "added" if created else "ended",
            "actor": actor.name,
            "reason": reason,
        },
    )


def _match_text(match: dict[str, str]) -> str:
    if "unit" in match:
        return f"unit {match['unit']}"
    return f"{match['attribute']}={match['value']}"


def _match_fields(match: object) -> dict[str, str]:
    if isinstance(match, dict) and set(match) == {"unit"}:
        unit = match["unit"]
        if not isinstance(unit, str) or not 0 < len(unit) <= MAX_UNIT_LENGTH:
            raise ValidationFailed(
                f"'match.unit' must be a non-empty string of at most {MAX_UNIT_LENGTH} characters.",
                details={"field": "match"},
            )
        return {"unit": unit}
    if isinstance(match, dict) and set(match) == {"attribute", "value"}:
        name, value = match["attribute"], match["value"]
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValidationFailed(
                "'match.attribute' must match ^[a-z][a-z0-9_-]{0,63}$.", details={"field": "match"}
            )
        if not isinstance(value, str) or not 0 < len(value) <= MAX_VALUE_LENGTH:
            raise ValidationFailed(
                f"'match.value' must be a non-empty string of at most {MAX_VALUE_LENGTH} characters.",
                details={"field": "match"},
            )
        return {"attribute": name, "value": value}
    raise ValidationFailed(
        '\'match\' must be {"unit": "…"} or {"attribute": "…", "value": "…"}.', details={"field": "match"}
    )


def _expires_at(value: object, now: datetime) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):  # the admin's form
        value = value.isoformat()
    try:
        when = parse_datetime(value) if isinstance(value, str) and len(value) <= 64 else None
    except ValueError:  # well formed, but no such time (month 13)
        when = None
    if when is None or when.tzinfo is None:
        raise ValidationFailed(
            "'expires_at' must be an ISO 8601 time with its offset (2026-12-31T18:00:00Z) or null.",
            details={"field": "expires_at"},
        )
    if when <= now:
        raise ValidationFailed("'expires_at' must be in the future.", details={"field": "expires_at"})
    return when
