"""How a rollout changes state: every transition is one transaction of the caller's, holding the
rollout row, a `RolloutTransition` (history) with what the decision that made it checked, an
audit entry, outbox rows for webhooks and the serving state's generation bump; once it commits,
it is counted in ``promptramp_rollout_transitions_total``.

The caller has locked the rollout row and checked its state (rollouts.services for a person's
actions, rollouts.controller for the controller's evaluations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from audit.actions import AuditAction
from audit.services import audit_record
from core.actors import Actor
from core.cluster_metrics import record
from core.state_cache import SERVING_STATE, state_changed
from registry.models import PRODUCTION, Label
from registry.services import label_move
from rollouts.engine import Action, Decision
from rollouts.figures import percent_value
from rollouts.metrics import transition_counted
from rollouts.models import Rollout, RolloutTransition
from rollouts.webhooks import outbox_enqueue

S = Rollout.State


def rollout_transition(
    *,
    rollout: Rollout,
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
    verdicts: list[dict[str, object]] = []
    conditions: list[dict[str, object]] = []
    if decision is not None:
        verdicts = [v.to_json() for v in decision.verdicts]
        conditions = decision.conditions.to_json()
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
        action=AuditAction.of_rollout_event(event),
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
    counted = transition_counted(kind=event, actor=actor)
    transaction.on_commit(lambda: record(counted))
    return transition


def rollout_end(
    *,
    rollout: Rollout,
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
    return rollout_transition(
        rollout=rollout,
        actor=actor,
        event=event,
        to_state=to_state,
        now=now,
        reason=reason,
        decision=decision,
        percent=0,
        ended_at=now,
    )


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
        return rollout_transition(
            rollout=rollout,
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
        return rollout_transition(
            rollout=rollout,
            actor=actor,
            event="paused",
            to_state=S.PAUSED,
            now=now,
            reason=why,
            decision=decision,
        )
    if decision.action == Action.ROLLBACK:
        return rollout_end(
            rollout=rollout,
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
    return rollout_transition(
        rollout=rollout,
        actor=actor,
        event="succeeded",
        to_state=S.SUCCEEDED,
        now=now,
        reason=why,
        decision=decision,
        percent=100,
        ended_at=now,
    )
