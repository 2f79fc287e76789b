"""How a rollout changes state: every transition is one transaction of the caller's, holding the
rollout row, a `RolloutTransition` (history) with what the decision that made it checked, an
audit entry, outbox rows for webhooks and the serving state's generation bump; once it commits,
it is counted in ``promptramp_rollout_transitions_total``.

The caller has locked the rollout row and checked its state (rollouts.services for a person's
actions, rollouts.controller for the controller's evaluations). The controller applies a whole
evaluation's decisions at once (`rollout_apply_decisions`): their transitions are written with a
few statements, one read of the webhooks, one announcement of the serving state naming every
prompt that changed, and one count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from audit.actions import AuditAction
from audit.services import audit_entry, audit_record_many
from core.actors import Actor
from core.cluster_metrics import record
from core.state_cache import SERVING_STATE, state_changed
from registry.models import PRODUCTION, Label
from registry.services import label_move
from rollouts.engine import Action, Decision
from rollouts.figures import percent_value
from rollouts.metrics import transition_counted
from rollouts.models import Rollout, RolloutTransition
from rollouts.webhooks import outbox_enqueue_transitions

S = Rollout.State
# What a transition may change of a rollout (the state, its reason, the latest verdicts and
# conditions, and the ``changes`` its callers pass).
CHANGED_FIELDS = (
    "state",
    "reason",
    "last_verdicts",
    "last_conditions",
    "last_evaluated_at",
    "step_index",
    "percent",
    "started_at",
    "step_started_at",
    "ended_at",
)


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
    moved = _move(
        rollout=rollout,
        actor=actor,
        event=event,
        to_state=to_state,
        now=now,
        reason=reason,
        decision=decision,
        changes=changes,
    )
    return _record([moved], actor=actor)[0]


def _move(
    *,
    rollout: Rollout,
    actor: Actor,
    event: str,
    to_state: str,
    now: datetime,
    reason: str,
    decision: Decision | None,
    changes: dict[str, Any],
) -> RolloutTransition:
    """Change the rollout's fields (in memory) and make its transition (not stored yet: `_record`)."""
    unknown = set(changes) - set(CHANGED_FIELDS)
    assert not unknown, f"a transition does not change {unknown}"
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
    return RolloutTransition(
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


def _record(transitions: Sequence[RolloutTransition], *, actor: Actor) -> list[RolloutTransition]:
    """Store the transitions `_move` made, by ``actor``, and what each one writes — the rollout's
    row, the transition's, an audit entry, outbox rows — with one statement of each kind for them
    all; once committed, announce the serving state's change (one announcement naming their
    prompts) and count them."""
    if not transitions:
        return []
    _store_rollouts([t.rollout for t in transitions])
    stored = RolloutTransition.objects.bulk_create(transitions)
    audit_record_many(
        [
            audit_entry(
                actor=actor,
                action=AuditAction.of_rollout_event(t.event),
                prompt_name=t.rollout.prompt.name,
                object_type="rollout",
                object_id=t.rollout.pk,
                reason=t.reason,
                data={
                    "from_state": t.from_state,
                    "to_state": t.to_state,
                    "step_index": t.step_index,
                    "percent": percent_value(t.percent),
                    "verdicts": t.verdicts,
                },
            )
            for t in stored
        ]
    )
    outbox_enqueue_transitions(transitions=stored)
    state_changed(SERVING_STATE, [t.rollout.prompt.name for t in stored])
    counts: dict[str, float] = {}
    for t in stored:
        for field, amount in transition_counted(kind=t.event, actor=actor):
            counts[field] = counts.get(field, 0.0) + amount
    transaction.on_commit(lambda: record(list(counts.items())))
    return stored


def _store_rollouts(rollouts: Sequence[Rollout]) -> None:
    """Write the `CHANGED_FIELDS` of the rollouts: one UPDATE per row, sent together (psycopg
    pipelines ``executemany``); Django's ``bulk_update`` costs more to build than the updates."""
    fields = [field for field in Rollout._meta.concrete_fields if field.name in CHANGED_FIELDS]
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(field.name)} = %s" for field in fields)  # no foreign key: name = column
    sql = f"UPDATE {quote(Rollout._meta.db_table)} SET {sets} WHERE id = %s"
    rows = [
        [field.get_db_prep_save(getattr(rollout, field.name), connection) for field in fields] + [rollout.pk]
        for rollout in rollouts
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


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
    ended = _end(
        rollout=rollout,
        actor=actor,
        event=event,
        to_state=to_state,
        now=now,
        reason=reason,
        decision=decision,
    )
    return _record([ended], actor=actor)[0]


def _end(
    *,
    rollout: Rollout,
    actor: Actor,
    event: str,
    to_state: str,
    now: datetime,
    reason: str,
    decision: Decision | None,
) -> RolloutTransition:
    """`rollout_end`'s label move (stored) and transition (not yet: `_record`)."""
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
    return _move(
        rollout=rollout,
        actor=actor,
        event=event,
        to_state=to_state,
        now=now,
        reason=reason,
        decision=decision,
        changes={"percent": 0, "ended_at": now},
    )


def rollout_apply_decision(
    *, rollout: Rollout, decision: Decision, actor: Actor, now: datetime, reason: str = ""
) -> RolloutTransition | None:
    """Apply the engine's decision to a rollout the caller has locked: every action but hold is
    a transition (returned). A hold changes only the latest verdicts and conditions, set on
    ``rollout`` for the caller to store (`rollout_evaluate_many` stores a whole batch's in one
    UPDATE). ``reason`` (a person's) is kept beside the engine's explanation."""
    return rollout_apply_decisions(decided=[(rollout, decision)], actor=actor, now=now, reason=reason)[0]


def rollout_apply_decisions(
    *, decided: Sequence[tuple[Rollout, Decision]], actor: Actor, now: datetime, reason: str = ""
) -> list[RolloutTransition | None]:
    """`rollout_apply_decision` for each (rollout, decision), in order; the transitions are
    stored together (`_record`)."""
    moved = [_apply(rollout, decision, actor=actor, now=now, reason=reason) for rollout, decision in decided]
    stored = iter(_record([t for t in moved if t is not None], actor=actor))
    return [None if t is None else next(stored) for t in moved]


def _apply(
    rollout: Rollout, decision: Decision, *, actor: Actor, now: datetime, reason: str
) -> RolloutTransition | None:
    why = f"{reason} ({decision.reason})" if reason else decision.reason
    if decision.action == Action.HOLD:
        rollout.last_verdicts = [verdict.to_json() for verdict in decision.verdicts]
        rollout.last_conditions, rollout.last_evaluated_at = decision.conditions.to_json(), now
        return None
    if decision.action == Action.ADVANCE:
        return _move(
            rollout=rollout,
            actor=actor,
            event="advanced",
            to_state=S.RUNNING,
            now=now,
            reason=why,
            decision=decision,
            changes={"step_index": decision.step_index, "percent": decision.percent, "step_started_at": now},
        )
    if decision.action == Action.PAUSE:
        return _move(
            rollout=rollout,
            actor=actor,
            event="paused",
            to_state=S.PAUSED,
            now=now,
            reason=why,
            decision=decision,
            changes={},
        )
    if decision.action == Action.ROLLBACK:
        return _end(
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
    return _move(
        rollout=rollout,
        actor=actor,
        event="succeeded",
        to_state=S.SUCCEEDED,
        now=now,
        reason=why,
        decision=decision,
        changes={"percent": 100, "ended_at": now},
    )
