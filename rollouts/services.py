"""Rollouts: create, the manual actions, and the controller's evaluation.

Every transition is one transaction: the rollout row, a `RolloutTransition` (history), an audit
entry (with the gate verdicts for automatic ones), outbox rows for webhooks, and the serving
state's generation bump. A rollout changes state only while its row is locked and in the state
the change expects: manual actions wait for the lock (`select_for_update`), the controller skips
a rollout another worker is evaluating (`skip_locked`) and re-checks that it is still running.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from access.actors import Actor
from audit.services import audit_record
from config.errors import ValidationFailed
from config.state_cache import state_changed
from registry.models import PRODUCTION, Label
from registry.services import SERVING_STATE, ensure_owner, label_move, prompt_get
from rollouts.engine import FAIL, Action, Decision
from rollouts.engine import decide as engine_decide
from rollouts.errors import GateFailing, NoProduction, RolloutActive, RolloutNotFound, RolloutStateError
from rollouts.figures import percent_value
from rollouts.models import Rollout, RolloutTransition
from rollouts.plan import DEFAULT_GATES, DEFAULT_PLAN, ConfigError, Gate, Plan, parse_gates
from rollouts.sources import RolloutRef, read_windows
from rollouts.webhooks import outbox_enqueue

CONTROLLER = Actor(user_id=None, name="system", is_admin=True, via="controller")
ACTIVE_INDEX = "one_active_rollout_per_prompt"
MAX_REASON = 10_000
CLOCK_AHEAD = timedelta(minutes=5)
S = Rollout.State


# --- validation -----------------------------------------------------------------------------


def _config(plan: object, gates: object) -> tuple[Plan, tuple[Gate, ...]]:
    try:
        clean_plan = DEFAULT_PLAN if plan is None else Plan.from_json(plan)
        clean_gates = DEFAULT_GATES if gates is None else parse_gates(gates)
    except ConfigError as error:
        raise ValidationFailed(str(error), details={"field": error.field}) from None
    if "\\u0000" in json.dumps([gate.to_json() for gate in clean_gates]):
        raise ValidationFailed("Gates may not contain NUL characters.", details={"field": "gates"})
    return clean_plan, clean_gates


def _reason(reason: object) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValidationFailed("'reason' must be a string of at most 10,000 characters.")
    return reason


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationFailed(f"'{name}' must be a positive integer.")
    return value


# --- transitions ----------------------------------------------------------------------------


def _transition(
    rollout: Rollout,
    *,
    actor: Actor,
    event: str,
    to_state: str,
    now: datetime,
    reason: str,
    decision: Decision | None = None,
    **changes: Any,
) -> RolloutTransition:
    """Move a locked rollout to ``to_state`` (with ``changes`` to its fields) and record it, with
    what the ``decision`` that made it checked."""
    from_state = rollout.state
    rollout.state = to_state
    if to_state in (S.PAUSED, S.SUCCEEDED, S.ROLLED_BACK, S.ABORTED):
        rollout.reason = reason
    elif to_state == S.RUNNING and from_state != S.RUNNING:
        rollout.reason = ""
    verdicts = [v.to_json() for v in decision.verdicts] if decision is not None else []
    conditions = decision.conditions.to_json() if decision is not None else []
    if decision is not None:
        rollout.last_verdicts, rollout.last_conditions, rollout.last_evaluated_at = verdicts, conditions, now
    for field, value in changes.items():
        setattr(rollout, field, value)
    rollout.save()
    transition = RolloutTransition.objects.create(
        rollout=rollout,
        at=now,
        event=event,
        from_state=from_state,
        to_state=to_state,
        step_index=rollout.step_index,
        percent=rollout.percent,
        actor_name=actor.name,
        reason=reason,
        verdicts=verdicts,
        conditions=conditions,
    )
    audit_record(
        actor=actor,
        action=f"rollout.{event}",
        prompt_name=rollout.prompt.name,
        object_type="rollout",
        object_id=rollout.pk,
        reason=reason,
        data={
            "from_state": from_state,
            "to_state": to_state,
            "step_index": rollout.step_index,
            "percent": percent_value(rollout.percent),
            "verdicts": verdicts,
        },
    )
    outbox_enqueue(rollout=rollout, transition=transition)
    state_changed(SERVING_STATE, [rollout.prompt.name])
    return transition


def _end(
    rollout: Rollout,
    *,
    actor: Actor,
    event: str,
    to_state: str,
    now: datetime,
    reason: str,
    decision: Decision | None = None,
) -> RolloutTransition:
    """Rollback or abort: every user back on the baseline, which stays (or is again) production."""
    production = Label.objects.filter(prompt=rollout.prompt, name=PRODUCTION).first()
    if production is None or production.version_id != rollout.baseline_id:
        label_move(
            actor=actor,
            prompt_name=rollout.prompt.name,
            label=PRODUCTION,
            version=rollout.baseline.version,
            reason=f"rollout {rollout.pk} {event.replace('_', ' ')}",
            system=True,
        )
    return _transition(
        rollout,
        actor=actor,
        event=event,
        to_state=to_state,
        now=now,
        reason=reason,
        decision=decision,
        percent=0,
        ended_at=now,
    )


def _locked(rollout_id: int, actor: Actor, allowed: Collection[str], action: str) -> Rollout:
    """The rollout, locked (waiting for an evaluation in progress), owned by the actor and in
    one of the ``allowed`` states."""
    rollout = (
        Rollout.objects.select_for_update(of=("self",))
        .select_related("prompt", "baseline", "candidate")
        .filter(pk=rollout_id)
        .first()
    )
    if rollout is None:
        raise RolloutNotFound(f"Rollout {rollout_id} does not exist.")
    ensure_owner(actor, rollout.prompt)
    if rollout.state not in allowed:
        raise RolloutStateError(
            f"A {rollout.state} rollout cannot {action}.",
            details={"state": rollout.state, "allowed_states": sorted(allowed)},
        )
    return rollout


# --- create and manual actions --------------------------------------------------------------


def rollout_create(
    *,
    actor: Actor,
    prompt_name: str,
    candidate_version: object,
    plan: object = None,
    gates: object = None,
    start: object = True,
    salt: object = None,
    reason: object = "",
) -> Rollout:
    """A rollout of ``candidate_version`` against the prompt's production version, started at
    once unless ``start`` is false. Gates given replace the default gates."""
    candidate_number = _positive_int(candidate_version, "candidate_version")
    clean_plan, clean_gates = _config(plan, gates)
    if not isinstance(start, bool):
        raise ValidationFailed("'start' must be true or false.")
    if salt is not None and (not isinstance(salt, str) or len(salt) > 200):
        raise ValidationFailed("'salt' must be a string of at most 200 characters.")
    clean_reason = _reason(reason)
    now = timezone.now()
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        production = Label.objects.filter(prompt=prompt, name=PRODUCTION).select_related("version").first()
        if production is None:
            raise NoProduction(f"Prompt '{prompt.name}' has no production version to roll out against.")
        candidate = prompt.versions.filter(version=candidate_number).first()
        if candidate is None:
            raise ValidationFailed(
                f"Prompt '{prompt.name}' has no version {candidate_number}.",
                details={"candidate_version": candidate_number},
            )
        if candidate.pk == production.version_id:
            raise ValidationFailed(
                f"Version {candidate_number} is already production: the candidate must differ.",
                details={"candidate_version": candidate_number},
            )
        try:
            with transaction.atomic():
                rollout = Rollout.objects.create(
                    prompt=prompt,
                    baseline=production.version,
                    candidate=candidate,
                    plan=clean_plan.to_json(),
                    gates=[gate.to_json() for gate in clean_gates],
                    salt=salt or "",
                    created_by_id=actor.user_id,
                )
        except IntegrityError as error:
            if ACTIVE_INDEX not in str(error):
                raise
            raise RolloutActive(
                f"Prompt '{prompt.name}' already has an active rollout: finish it first."
            ) from None
        if not salt:
            rollout.salt = f"{prompt.name}:{rollout.pk}"
            rollout.save(update_fields=["salt"])
        audit_record(
            actor=actor,
            action="rollout.create",
            prompt_name=prompt.name,
            object_type="rollout",
            object_id=rollout.pk,
            reason=clean_reason,
            data={
                "baseline_version": production.version.version,
                "candidate_version": candidate_number,
                "plan": rollout.plan,
                "gates": rollout.gates,
                "salt": rollout.salt,
            },
        )
        state_changed(SERVING_STATE, [prompt.name])
        if start:
            _start(rollout, actor=actor, now=now, reason=clean_reason)
    return rollout


def _start(rollout: Rollout, *, actor: Actor, now: datetime, reason: str) -> None:
    _transition(
        rollout,
        actor=actor,
        event="started",
        to_state=S.RUNNING,
        now=now,
        reason=reason,
        step_index=0,
        percent=rollout.plan[0]["percent"],
        started_at=now,
        step_started_at=now,
    )


def rollout_start(*, actor: Actor, rollout_id: int, reason: object = "") -> Rollout:
    clean_reason = _reason(reason)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.PENDING], "start")
        _start(rollout, actor=actor, now=timezone.now(), reason=clean_reason)
    return rollout


def rollout_pause(*, actor: Actor, rollout_id: int, reason: object = "") -> Rollout:
    """Keep the current split and stop evaluating until resumed."""
    clean_reason = _reason(reason)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.RUNNING], "pause")
        _transition(
            rollout, actor=actor, event="paused", to_state=S.PAUSED, now=timezone.now(), reason=clean_reason
        )
    return rollout


def rollout_resume(*, actor: Actor, rollout_id: int, reason: object = "") -> Rollout:
    """Run again; the current step starts over: its clock and its statistics window."""
    clean_reason = _reason(reason)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.PAUSED], "resume")
        now = timezone.now()
        _transition(
            rollout,
            actor=actor,
            event="resumed",
            to_state=S.RUNNING,
            now=now,
            reason=clean_reason,
            step_started_at=now,
        )
    return rollout


def rollout_promote(*, actor: Actor, rollout_id: int, reason: object = "") -> Rollout:
    """Advance one step now, past manual approval, the step's wait, its min_samples and
    insufficient_data, but never past a failing gate (GateFailing names it). Promoting the last
    step makes the candidate production."""
    clean_reason = _reason(reason)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.RUNNING, S.PAUSED], "be promoted")
        now = timezone.now()
        decision = _decide(rollout, now=now, promote=True)
        if decision.action not in (Action.ADVANCE, Action.SUCCEED):
            failing = [v for v in decision.verdicts if v.verdict == FAIL]
            names = ", ".join(v.metric for v in failing)
            raise GateFailing(
                f"Cannot promote past a failing gate ({names}): {decision.reason}",
                details={"verdicts": [v.to_json() for v in failing]},
            )
        rollout_apply_decision(rollout=rollout, decision=decision, actor=actor, now=now, reason=clean_reason)
    return rollout


def rollout_rollback(*, actor: Actor, rollout_id: int, reason: object = "") -> Rollout:
    """End the rollout: every user back on the baseline at once."""
    clean_reason = _reason(reason)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.RUNNING, S.PAUSED], "be rolled back")
        _end(
            rollout,
            actor=actor,
            event="rolled_back",
            to_state=S.ROLLED_BACK,
            now=timezone.now(),
            reason=clean_reason or f"rolled back by {actor.name}",
        )
    return rollout


def rollout_abort(*, actor: Actor, rollout_id: int, reason: object = "") -> Rollout:
    """End the rollout without a verdict: every user back on the baseline."""
    clean_reason = _reason(reason)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, Rollout.ACTIVE_STATES, "be aborted")
        _end(
            rollout,
            actor=actor,
            event="aborted",
            to_state=S.ABORTED,
            now=timezone.now(),
            reason=clean_reason or f"aborted by {actor.name}",
        )
    return rollout


# --- the controller -------------------------------------------------------------------------


def step_window(step_started_at: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The statistics window of a step: from the first whole minute after it started (outcomes
    are kept per minute, so none from before the step, or before a resume, counts) to now, plus
    the minutes of outcomes stamped ahead by callers' clocks (ingest accepts up to 5 min)."""
    start = step_started_at.replace(second=0, microsecond=0)
    if start != step_started_at:
        start += timedelta(minutes=1)
    return start, now + CLOCK_AHEAD


def _decide(rollout: Rollout, *, now: datetime, promote: bool = False) -> Decision:
    """Read the current step's window from the gates' sources and ask the engine."""
    plan, gates = Plan.from_json(rollout.plan), parse_gates(rollout.gates)
    step_started_at = rollout.step_started_at or now
    since, until = step_window(step_started_at, now)
    ref = RolloutRef(
        rollout_id=rollout.pk,
        prompt=rollout.prompt.name,
        baseline_version=rollout.baseline.version,
        candidate_version=rollout.candidate.version,
    )
    windows = read_windows(rollout=ref, gates=gates, since=since, until=until)
    return engine_decide(
        plan=plan,
        step_index=rollout.step_index,
        step_started_at=step_started_at,
        now=now,
        windows=windows,
        gates=gates,
        promote=promote,
    )


def rollout_evaluate_many(*, rollout_ids: Sequence[int], now: datetime | None = None) -> dict[int, Decision]:
    """Controller evaluations of several rollouts in one transaction: lock the running ones that
    no other worker is evaluating (the others are skipped: absent from the result), read each
    one's step statistics, decide, apply. Evaluating again on the same inputs changes nothing."""
    moment = now or timezone.now()
    decisions: dict[int, Decision] = {}
    with transaction.atomic():
        rollouts = list(
            Rollout.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("prompt", "baseline", "candidate")
            .filter(pk__in=rollout_ids, state=S.RUNNING)
            .order_by("id")
        )
        holds = []
        for rollout in rollouts:
            decision = decisions[rollout.pk] = _decide(rollout, now=moment)
            if rollout_apply_decision(rollout=rollout, decision=decision, actor=CONTROLLER, now=moment):
                continue
            holds.append(rollout)
        if holds:
            if len(holds) == len(rollouts):
                # Only the latest verdicts change: no need to wait for the WAL flush (a crash may
                # lose them, and the next tick writes them again).
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            Rollout.objects.bulk_update(holds, ["last_verdicts", "last_conditions", "last_evaluated_at"])
    return decisions


def rollout_evaluate(*, rollout_id: int, now: datetime | None = None) -> Decision | None:
    """One controller evaluation; None when the rollout is not running or another worker is
    evaluating it."""
    return rollout_evaluate_many(rollout_ids=[rollout_id], now=now).get(rollout_id)


def rollout_apply_decision(
    *, rollout: Rollout, decision: Decision, actor: Actor, now: datetime, reason: str = ""
) -> RolloutTransition | None:
    """Apply the engine's decision to a rollout the caller has locked: every action but hold is
    a transition (returned). A hold changes only the latest verdicts and conditions, set on
    ``rollout`` for the caller to store (`rollout_evaluate_many` stores a whole batch's in one
    UPDATE). ``reason`` (a person's) is kept beside the engine's explanation."""
    why = f"{reason} ({decision.reason})" if reason else decision.reason
    if decision.action == Action.HOLD:
        rollout.last_verdicts = [verdict.to_json() for verdict in decision.verdicts]
        rollout.last_conditions, rollout.last_evaluated_at = decision.conditions.to_json(), now
        return None
    if decision.action == Action.ADVANCE:
        return _transition(
            rollout,
            actor=actor,
            event="advanced",
            to_state=S.RUNNING,
            now=now,
            reason=why,
            decision=decision,
            step_index=decision.step_index,
            percent=decision.percent,
            step_started_at=now,
        )
    if decision.action == Action.PAUSE:
        return _transition(
            rollout, actor=actor, event="paused", to_state=S.PAUSED, now=now, reason=why, decision=decision
        )
    if decision.action == Action.ROLLBACK:
        return _end(
            rollout,
            actor=actor,
            event="rolled_back",
            to_state=S.ROLLED_BACK,
            now=now,
            reason=why,
            decision=decision,
        )
    label_move(
        actor=actor,
        prompt_name=rollout.prompt.name,
        label=PRODUCTION,
        version=rollout.candidate.version,
        reason=f"rollout {rollout.pk} succeeded",
        system=True,
    )
    return _transition(
        rollout,
        actor=actor,
        event="succeeded",
        to_state=S.SUCCEEDED,
        now=now,
        reason=why,
        decision=decision,
        percent=100,
        ended_at=now,
    )
