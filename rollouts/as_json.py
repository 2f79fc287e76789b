"""A rollout and its transitions as JSON: what the API answers (rollouts.api) and what webhooks
send (rollouts.webhooks), written once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rollouts.figures import percent_value
from rollouts.models import Rollout, RolloutTransition
from rollouts.plan import TrafficCheck


def iso_time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def shadow_percent(plan: list[dict[str, Any]], step_index: int, state: str) -> int | None:
    """The percent of units whose answers carry the candidate to run unseen: that of a shadow
    step while the rollout is on it (running or paused), else None."""
    if state not in Rollout.SPLITTING_STATES or step_index >= len(plan) or not plan[step_index].get("shadow"):
        return None
    return int(plan[step_index]["percent"])


def rollout_json(rollout: Rollout) -> dict[str, Any]:
    plan = rollout.plan
    return {
        "id": rollout.pk,
        "prompt": rollout.prompt.name,
        "baseline_version": rollout.baseline.version,
        "candidate_version": rollout.candidate.version,
        "state": rollout.state,
        "step_index": rollout.step_index,
        "percent": percent_value(rollout.percent),
        "shadow_percent": shadow_percent(plan, rollout.step_index, rollout.state),
        "plan": plan,
        "gates": rollout.gates,
        "traffic": TrafficCheck.from_json(rollout.traffic).to_json(),
        "salt": rollout.salt,
        "created_at": iso_time(rollout.created_at),
        "started_at": iso_time(rollout.started_at),
        "ended_at": iso_time(rollout.ended_at),
        "reason": rollout.reason,
        "current_step": plan[rollout.step_index] if rollout.step_index < len(plan) else None,
        "step_started_at": iso_time(rollout.step_started_at),
        "last_evaluated_at": iso_time(rollout.last_evaluated_at),
    }


def transition_json(transition: RolloutTransition) -> dict[str, Any]:
    """A transition with the verdicts and the conditions of the decision that made it (empty for
    a person's action other than promote)."""
    return {
        "at": iso_time(transition.at),
        "event": transition.event,
        "from_state": transition.from_state,
        "to_state": transition.to_state,
        "step_index": transition.step_index,
        "percent": percent_value(transition.percent),
        "shadow_percent": shadow_percent(transition.rollout.plan, transition.step_index, transition.to_state),
        "actor": transition.actor_name,
        "reason": transition.reason,
        "verdicts": transition.verdicts,
        "conditions": transition.conditions,
    }
