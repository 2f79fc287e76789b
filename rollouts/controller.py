"""The controller's evaluations: read the current step's window from the gates' sources, ask the
engine (rollouts.engine.decide), apply its decision (rollouts.transitions).

The controller skips a rollout another worker is evaluating (``skip_locked``) and evaluates only
running ones, so two workers racing on one rollout make one transition, and evaluating twice on
the same inputs changes nothing more. Pending rollouts waiting for their required checks are
evaluated by the same tick through rollouts.checks, which starts them with the start service
(rollouts.services, which builds on this module).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from core.actors import Actor
from rollouts.engine import Decision, decide
from rollouts.metrics import evaluations_record
from rollouts.models import Rollout
from rollouts.plan import Plan, TrafficCheck, parse_gates
from rollouts.selectors import rollout_list_claimed
from rollouts.sources import RolloutArms, read_windows
from rollouts.stats import CLOCK_ALLOWANCE
from rollouts.transitions import rollout_apply_decisions

CONTROLLER = Actor(user_id=None, name="system", is_admin=True, via="controller")


def step_window(step_started_at: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The statistics window of a step: from the first whole minute after it started (outcomes
    are kept per minute, so none from before the step, or before a resume, counts) to now, plus
    the minutes of outcomes stamped ahead by callers' clocks (`CLOCK_ALLOWANCE`)."""
    start = step_started_at.replace(second=0, microsecond=0)
    if start != step_started_at:
        start += timedelta(minutes=1)
    return start, now + CLOCK_ALLOWANCE


def rollout_decide(*, rollout: Rollout, now: datetime, promote: bool = False) -> Decision:
    """Read the current step's window from the gates' sources and ask the engine; nothing is
    applied."""
    plan, gates = Plan.from_json(rollout.plan), parse_gates(rollout.gates)
    step_started_at = rollout.step_started_at or now
    since, until = step_window(step_started_at, now)
    arms = RolloutArms(
        rollout_id=rollout.pk,
        prompt=rollout.prompt.name,
        baseline_version=rollout.baseline.version,
        candidate_version=rollout.candidate.version,
        threshold=int(rollout.percent * 100),
        shadow=plan.steps[rollout.step_index].shadow,
    )
    windows = read_windows(rollout=arms, gates=gates, since=since, until=until)
    return decide(
        plan=plan,
        step_index=rollout.step_index,
        step_started_at=step_started_at,
        now=now,
        windows=windows,
        gates=gates,
        traffic=TrafficCheck.from_json(rollout.traffic),
        promote=promote,
    )


def rollout_evaluate_many(*, rollout_ids: Sequence[int], now: datetime | None = None) -> dict[int, Decision]:
    """Controller evaluations of several rollouts in one transaction: lock the running ones that
    no other worker is evaluating (the others are skipped: absent from the result), read each
    one's step statistics and decide, then apply the decisions together (their transitions
    stored with a few statements). Evaluating again on the same inputs changes nothing. Once
    committed, its verdicts and time are counted (``rollouts.metrics``)."""
    started = time.monotonic()
    moment = now or timezone.now()
    decisions: dict[int, Decision] = {}
    with transaction.atomic():
        rollouts = list(rollout_list_claimed(rollout_ids=rollout_ids, state=Rollout.State.RUNNING))
        for rollout in rollouts:
            decisions[rollout.pk] = rollout_decide(rollout=rollout, now=moment)
        transitions = rollout_apply_decisions(
            decided=[(rollout, decisions[rollout.pk]) for rollout in rollouts], actor=CONTROLLER, now=moment
        )
        holds = [rollout for rollout, moved in zip(rollouts, transitions, strict=True) if moved is None]
        if holds:
            if len(holds) == len(rollouts):
                # Only the latest verdicts and conditions change: no need to wait for the WAL
                # flush (a crash may lose them, and the next tick writes them again).
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            Rollout.objects.bulk_update(holds, ["last_verdicts", "last_conditions", "last_evaluated_at"])
    if decisions:
        verdicts = [verdict for decision in decisions.values() for verdict in decision.verdicts]
        evaluations_record(verdicts=verdicts, seconds=time.monotonic() - started)
    return decisions


def rollout_evaluate(*, rollout_id: int, now: datetime | None = None) -> Decision | None:
    """One controller evaluation; None when the rollout is not running or another worker is
    evaluating it."""
    return rollout_evaluate_many(rollout_ids=[rollout_id], now=now).get(rollout_id)
