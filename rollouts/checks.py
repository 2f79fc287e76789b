"""Required checks: CI's reports (`rollout_check_report`) and the controller's evaluation of the
pending rollouts waiting for them (`rollout_checks_evaluate_many`). The rules are in
rollouts.check_rules.

A failing report aborts the rollout at once, naming the check and its detail. Once every check
has passed, the evaluation starts a rollout created with ``start: true`` through
`rollouts.services.rollout_start`, as its creator (so every rule on starting applies; a start the
rules refuse leaves it pending, saying why, for someone else to start); one created with
``start: false`` may then be started. A rollout whose checks have not all passed
``checks_timeout_s`` after its creation is aborted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from core import outbound
from core.actors import Actor
from core.errors import DomainError, ValidationFailed
from registry.services import ensure_owner
from rollouts.check_rules import (
    FAIL,
    MAX_DETAIL,
    MAX_NAME,
    MAX_URL,
    PASS,
    REPORTED_STATUSES,
    ChecksOutcome,
    CheckState,
    Outcome,
    checks_outcome,
    failure_reason,
)
from rollouts.controller import CONTROLLER
from rollouts.errors import RolloutStateError
from rollouts.models import Rollout, RolloutCheck
from rollouts.selectors import rollout_get_locked, rollout_list_claimed
from rollouts.services import rollout_start
from rollouts.transitions import rollout_end

EVALUATE_TASK = "rollouts.evaluate_checks"
S = Rollout.State


def _text(value: object, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise ValidationFailed(
            f"'{name}' must be a string of at most {limit:,} characters.", details={"field": name}
        )
    return value


def _url(value: object) -> str:
    url = _text(value, "url", MAX_URL)
    if url and not outbound.is_http_url(url):
        raise ValidationFailed("'url' must be an http or https URL.", details={"field": "url"})
    return url


def rollout_check_report(
    *,
    actor: Actor,
    rollout_id: int,
    name: object,
    status: object,
    detail: object = None,
    url: object = None,
    as_owner: bool,
) -> Rollout:
    """Record CI's report of one required check of a pending rollout (a later report of the same
    check replaces it). ``as_owner``: the reporter acts on its ``write`` scope, so it must own the
    prompt (a ``checks`` key need not). A failing check aborts the rollout."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or "\x00" in name:
        raise ValidationFailed(
            "'name' must be the name of one of the rollout's required checks.", details={"field": "name"}
        )
    if status not in REPORTED_STATUSES:
        raise ValidationFailed(
            f"'status' must be one of {', '.join(REPORTED_STATUSES)}.", details={"field": "status"}
        )
    clean_detail, clean_url = _text(detail, "detail", MAX_DETAIL), _url(url)
    now = timezone.now()
    with transaction.atomic():
        rollout = rollout_get_locked(rollout_id)
        if as_owner:
            ensure_owner(actor, rollout.prompt)
        check = RolloutCheck.objects.filter(rollout=rollout, name=name).first()
        if check is None:
            known = list(rollout.checks.values_list("name", flat=True))
            raise ValidationFailed(
                f"Rollout {rollout.pk} requires no check named {name!r}.",
                details={"name": name, "required_checks": known},
            )
        if rollout.state != S.PENDING:
            raise RolloutStateError(
                f"Rollout {rollout.pk} is {rollout.state}: checks are reported only while it is pending.",
                details={"state": rollout.state, "allowed_states": [S.PENDING]},
            )
        check.status, check.detail, check.url = status, clean_detail, clean_url
        check.reported_at, check.reported_by = now, actor.name
        check.save()
        audit_record(
            actor=actor,
            action=AuditAction.ROLLOUT_CHECK_REPORTED,
            prompt_name=rollout.prompt.name,
            object_type="rollout",
            object_id=rollout.pk,
            reason=clean_detail,
            data={
                "check": name,
                "status": status,
                "url": clean_url or None,
            },
        )
        if status == FAIL:
            rollout_end(
                rollout=rollout,
                actor=actor,
                event="aborted",
                to_state=S.ABORTED,
                now=now,
                reason=failure_reason(name, clean_detail),
            )
        elif not rollout.checks.exclude(status=PASS).exists():
            transaction.on_commit(lambda: current_app.send_task(EVALUATE_TASK, (rollout.pk,)))
    return rollout


def _creator(rollout: Rollout) -> Actor:
    """Who starts a rollout automatically once its checks passed: its creator."""
    creator = rollout.created_by
    return CONTROLLER if creator is None else Actor.of_user(creator, via="automatic start after checks")


def _evaluate(rollout: Rollout, now: datetime) -> ChecksOutcome:
    checks = [CheckState(c.name, c.status, c.detail) for c in rollout.checks.all()]
    outcome = checks_outcome(
        checks=checks, created_at=rollout.created_at, timeout_s=rollout.checks_timeout_s, now=now
    )
    if outcome.outcome in (Outcome.FAILED, Outcome.TIMED_OUT):
        rollout_end(
            rollout=rollout,
            actor=CONTROLLER,
            event="aborted",
            to_state=S.ABORTED,
            now=now,
            reason=outcome.reason,
        )
        return outcome
    if outcome.outcome == Outcome.PASSED and rollout.start_after_checks:
        rollout.start_after_checks = False
        try:
            with transaction.atomic():
                rollout_start(actor=_creator(rollout), rollout_id=rollout.pk, reason=outcome.reason)
        except DomainError as refused:
            outcome = ChecksOutcome(
                Outcome.PASSED, f"{outcome.reason}; the automatic start was refused: {refused}"
            )
        else:
            return outcome
    elif outcome.outcome == Outcome.PASSED:
        outcome = ChecksOutcome(Outcome.PASSED, f"{outcome.reason}; it may be started")
    rollout.reason, rollout.last_evaluated_at = outcome.reason, now
    rollout.save(update_fields=["start_after_checks", "reason", "last_evaluated_at"])
    return outcome


def rollout_checks_evaluate_many(
    *, rollout_ids: Sequence[int], now: datetime | None = None
) -> dict[int, ChecksOutcome]:
    """The controller's evaluation of pending rollouts waiting for their checks, in one
    transaction: lock those no other worker is evaluating (the others are absent from the
    result), then abort, start or wait as `check_rules.checks_outcome` says."""
    moment = now or timezone.now()
    outcomes: dict[int, ChecksOutcome] = {}
    with transaction.atomic():
        rollouts = (
            rollout_list_claimed(rollout_ids=rollout_ids, state=S.PENDING)
            .select_related("created_by")
            .prefetch_related("checks")
        )
        for rollout in rollouts:
            if rollout.checks.all():
                outcomes[rollout.pk] = _evaluate(rollout, moment)
    return outcomes
