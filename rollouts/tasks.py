"""The controller's Celery tasks: thin, by id, safe to run twice.

Beat runs `rollouts_tick` every PROMPTRAMP_TICK_SECONDS; it fans out one `rollout_evaluate_task`
per running rollout and one `rollout_checks_task` per pending rollout waiting for its required
checks. An evaluation still queued when the next tick comes has expired (the next
tick queues a fresh one), so a slow queue never piles up.
"""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from rollouts.checks import EVALUATE_TASK, rollout_checks_evaluate_many
from rollouts.controller import rollout_evaluate
from rollouts.metrics import tick_record
from rollouts.selectors import rollout_ids_to_evaluate, rollout_ids_waiting_for_checks
from rollouts.webhooks import DELIVER_TASK, outbox_deliver_due

TICK_BATCH = 10_000


@shared_task(name="rollouts.tick")
def rollouts_tick() -> int:
    """Queue one evaluation per running rollout (at most TICK_BATCH, least recently evaluated
    first) and one per pending rollout waiting for its required checks. Returns how many were
    queued."""
    started = time.monotonic()
    ids = rollout_ids_to_evaluate(limit=TICK_BATCH)
    for rollout_id in ids:
        rollout_evaluate_task.apply_async((rollout_id,), expires=settings.PROMPTRAMP_TICK_SECONDS)
    waiting = rollout_ids_waiting_for_checks(limit=TICK_BATCH)
    for rollout_id in waiting:
        rollout_checks_task.apply_async((rollout_id,), expires=settings.PROMPTRAMP_TICK_SECONDS)
    tick_record(seconds=time.monotonic() - started)
    return len(ids) + len(waiting)


@shared_task(name="rollouts.evaluate")
def rollout_evaluate_task(rollout_id: int) -> str | None:
    decision = rollout_evaluate(rollout_id=rollout_id)
    return None if decision is None else str(decision.action)


@shared_task(name=EVALUATE_TASK)
def rollout_checks_task(rollout_id: int) -> str | None:
    outcome = rollout_checks_evaluate_many(rollout_ids=[rollout_id]).get(rollout_id)
    return None if outcome is None else str(outcome.outcome)


@shared_task(name=DELIVER_TASK)
def webhooks_deliver_task() -> int:
    return len(outbox_deliver_due(now=timezone.now()))
