"""The controller's Celery tasks: thin, by id, safe to run twice.

Beat runs `rollouts_tick` every PROMPTRAMP_TICK_SECONDS; it fans out one `rollout_evaluate_task`
per running rollout. An evaluation still queued when the next tick comes has expired (the next
tick queues a fresh one), so a slow queue never piles up.
"""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from rollouts.controller import rollout_evaluate
from rollouts.metrics import tick_record
from rollouts.selectors import rollout_ids_to_evaluate
from rollouts.webhooks import DELIVER_TASK, outbox_deliver_due

TICK_BATCH = 10_000


@shared_task(name="rollouts.tick")
def rollouts_tick() -> int:
    """Queue one evaluation per running rollout (at most TICK_BATCH, least recently evaluated
    first). Returns how many were queued."""
    started = time.monotonic()
    ids = rollout_ids_to_evaluate(limit=TICK_BATCH)
    for rollout_id in ids:
        rollout_evaluate_task.apply_async((rollout_id,), expires=settings.PROMPTRAMP_TICK_SECONDS)
    tick_record(seconds=time.monotonic() - started)
    return len(ids)


@shared_task(name="rollouts.evaluate")
def rollout_evaluate_task(rollout_id: int) -> str | None:
    decision = rollout_evaluate(rollout_id=rollout_id)
    return None if decision is None else str(decision.action)


@shared_task(name=DELIVER_TASK)
def webhooks_deliver_task() -> int:
    return len(outbox_deliver_due(now=timezone.now()))
