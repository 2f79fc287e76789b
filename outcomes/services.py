"""Outcome ingest: a batch of events into Redis (durable, de-duplicated), and Redis into
PostgreSQL's per-minute rows (exactly once).

``events_ingest`` answers a batch with one Lua script call after checking it in plain Python.
``outcome_minutes_flush`` (a Celery beat task every PROMPTRAMP_FLUSH_SECONDS) moves aggregates
to OutcomeMinute rows in three steps, each safe to crash after and to run concurrently:

1. *take*: one script renames pending hashes into a new batch (new events start new hashes);
2. *apply*: one transaction inserts the batch's FlushedBatch row first and adds the aggregates
   to their rows (``INSERT … ON CONFLICT DO UPDATE`` adding counts, sums and histograms). A
   batch whose row exists was applied already, so it is skipped; two flushers applying the same
   batch at once meet on that row's primary key and the second one skips it;
3. *forget*: one script deletes the batch from Redis.

Every run first finishes the batches a crashed or concurrent run left open, then takes new ones;
a run that finds nothing more to take records it (the flush lag, ``outcomes.metrics``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import connection, transaction

from core.prompt_limits import PromptLimits, PromptNotAllowed, prompt_allowed
from outcomes.aggregation import aggregate, minute_totals, parse_key
from outcomes.errors import BatchTooLarge, IngestBacklog, InvalidEvents
from outcomes.event_targets import RolloutRef, events_series, rollouts_lookup
from outcomes.exposures import sdk_exposures_add
from outcomes.metrics import caught_up_record
from outcomes.models import FlushedBatch
from outcomes.pending import (
    batch_forget,
    batch_read,
    batch_take,
    batches_open,
    durability_warn_once,
    events_add,
)
from outcomes.validation import (
    BatchRejected,
    Event,
    ReportedExposure,
    exposure_problem,
    parse_batch,
    parse_exposures,
    problem,
)

MAX_PROBLEMS_SHOWN = 1000
# Distinct score names a rollout's events may carry: each is a statistic every evaluation reads
# and a `score:*` gate judges, so a careless (or hostile) client cannot make them unbounded.
MAX_SCORE_NAMES_PER_ROLLOUT = 20
FLUSHED_BATCHES_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    exposures: int | None = None  # exposure rows counted (0: a batch_id seen before; None: none sent)
    exposures_total: int = 0  # the sum of the counted rows' counts


def events_ingest(*, body: bytes, now: float, prompts: PromptLimits = None) -> IngestResult:
    """Check a ``{"events": [...], "batch_id"?, "exposures"?}`` body and count its new events
    and its exposures; ``now`` is the arrival time (Unix seconds). All or nothing: one invalid
    event or exposure row refuses the whole batch (InvalidEvents, with each problem's index or
    ``exposure``, field and reason), and so does one event or exposure for a prompt outside the
    key's ``prompts`` (PromptNotAllowed, 403, naming them the same way). Events whose
    ``event_id`` was seen before (in this batch or within the de-duplication window) are
    counted as duplicates only; the exposures of a ``batch_id`` seen before are not counted.
    """
    try:
        events, problems = parse_batch(body, now=now)
    except BatchRejected as error:
        raise (BatchTooLarge if error.too_large else InvalidEvents)(error.message) from None
    batch_id, exposures, exposure_problems = parse_exposures(body, now=now)
    rollouts = rollouts_lookup({row.rollout_id for row in exposures})
    exposure_problems += [
        exposure_problem(row.index, "rollout_id", f"there is no rollout {row.rollout_id}")
        for row in exposures
        if row.rollout_id not in rollouts
    ]
    if prompts is not None:
        _refuse_other_prompts(events, prompts, exposures, rollouts)
    placed, target_problems = events_series(events)
    problems += target_problems
    if problems or exposure_problems:
        problems.sort(key=lambda p: p["index"])
        invalid = len({p["index"] for p in problems})
        message = f"{invalid} event(s) of this batch are not valid; nothing from it was stored."
        if exposure_problems:
            message = (
                f"{invalid} event(s) and the exposures of this batch are not all valid; "
                "nothing from it was stored."
            )
        raise InvalidEvents(message, details=(problems + exposure_problems)[:MAX_PROBLEMS_SHOWN])
    durability_warn_once()
    unique = {event.event_id: (series, event) for series, event in reversed(placed)}
    remaining = sorted(unique.values(), key=lambda placed_event: placed_event[1].index)
    duplicates = len(placed) - len(remaining)
    while remaining:
        result = events_add(
            event_ids=[event.event_id for _, event in remaining],
            increments=aggregate(remaining),
            score_names=_score_names(event for _, event in remaining),
            max_score_names=MAX_SCORE_NAMES_PER_ROLLOUT,
            now=now,
        )
        if result.busy:
            raise IngestBacklog("Too many outcome aggregates are waiting to be stored; retry shortly.")
        if result.refused_score_names:
            raise _too_many_score_names([event for _, event in remaining], result.refused_score_names)
        if not result.duplicates:
            break
        seen = set(result.duplicates)
        remaining = [item for position, item in enumerate(remaining) if position not in seen]
        duplicates += len(seen)
    if not exposures or batch_id is None:
        return IngestResult(accepted=len(remaining), duplicates=duplicates)
    if not sdk_exposures_add(batch_id=batch_id, exposures=exposures):
        return IngestResult(accepted=len(remaining), duplicates=duplicates, exposures=0)
    total = sum(row.count for row in exposures)
    return IngestResult(len(remaining), duplicates, exposures=len(exposures), exposures_total=total)


def _refuse_other_prompts(
    events: list[Event],
    prompts: tuple[str, ...],
    exposures: list[ReportedExposure],
    rollouts: dict[int, RolloutRef],
) -> None:
    refused = [
        problem(event.index, "prompt", "this API key is limited to other prompts")
        for event in events
        if not prompt_allowed(prompts, event.prompt)
    ] + [
        exposure_problem(row.index, "rollout_id", "a rollout of a prompt this API key is limited from")
        for row in exposures
        if not prompt_allowed(prompts, rollouts[row.rollout_id].prompt_name)
    ]
    if refused:
        raise PromptNotAllowed(
            f"{len(refused)} event(s) or exposure(s) of this batch are for prompts this API key may not "
            "report on; nothing from it was stored.",
            details=refused[:MAX_PROBLEMS_SHOWN],
        )


def _score_names(events: Iterable[Event]) -> dict[int, list[str]]:
    """Each rollout's score names in these events, in the order they first appear."""
    names: dict[int, dict[str, None]] = {}
    for event in events:
        if event.scores and event.rollout_id is not None:
            ordered = names.get(event.rollout_id)
            if ordered is None:
                ordered = names[event.rollout_id] = {}
            for name in event.scores:
                if name not in ordered:
                    ordered[name] = None
    return {rollout_id: list(ordered) for rollout_id, ordered in names.items()}


def _too_many_score_names(events: list[Event], refused: frozenset[tuple[int, str]]) -> InvalidEvents:
    problems = [
        problem(
            event.index,
            f"scores.{name}",
            f"rollout {event.rollout_id} already has {MAX_SCORE_NAMES_PER_ROLLOUT} score names; "
            "no new one is taken",
        )
        for event in events
        if event.rollout_id is not None
        for name in event.scores
        if (event.rollout_id, name) in refused
    ]
    invalid = len({p["index"] for p in problems})
    return InvalidEvents(
        f"{invalid} event(s) of this batch bring score names past the "
        f"{MAX_SCORE_NAMES_PER_ROLLOUT} a rollout may have; nothing from it was stored.",
        details=problems[:MAX_PROBLEMS_SHOWN],
    )


@dataclass(frozen=True)
class FlushReport:
    batches: int
    rows: int


def outcome_minutes_flush(*, max_batches: int = 20, keys_per_batch: int = 500) -> FlushReport:
    """Move pending aggregates from Redis into OutcomeMinute rows (see the module docstring)."""
    batches = rows = 0
    for batch_id in batches_open():
        rows += batch_apply(batch_id=batch_id)
        batch_forget(batch_id)
        batches += 1
    for _ in range(max_batches):
        batch_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex}"
        looked = time.time()
        if not batch_take(batch_id=batch_id, max_keys=keys_per_batch):
            if not batches_open():  # none taken by a concurrent run and not yet applied
                caught_up_record(at=looked)
            break
        rows += batch_apply(batch_id=batch_id)
        batch_forget(batch_id)
        batches += 1
    FlushedBatch.objects.filter(flushed_at__lt=datetime.now(UTC) - FLUSHED_BATCHES_KEPT).exclude(
        batch_id__in=batches_open()
    ).delete()
    return FlushReport(batches=batches, rows=rows)


_RECORD_BATCH = """
INSERT INTO outcomes_flushedbatch (batch_id, flushed_at, keys) VALUES (%s, %s, %s)
ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id
"""

_ADD_ROW = """
INSERT INTO outcomes_outcomeminute AS o (
    minute, prompt_id, version_id, rollout_id, arm, samples, errors,
    latency_count, latency_sum, latency_sumsq, latency_histogram, cost_count, cost_sum, cost_sumsq,
    input_tokens_count, input_tokens_sum, output_tokens_count, output_tokens_sum, scores, error_types
) VALUES (
    %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb
)
ON CONFLICT ON CONSTRAINT outcome_minute_unique DO UPDATE SET
    samples = o.samples + EXCLUDED.samples,
    errors = o.errors + EXCLUDED.errors,
    latency_count = o.latency_count + EXCLUDED.latency_count,
    latency_sum = o.latency_sum + EXCLUDED.latency_sum,
    latency_sumsq = o.latency_sumsq + EXCLUDED.latency_sumsq,
    latency_histogram = outcomes_add_counts(o.latency_histogram, EXCLUDED.latency_histogram),
    cost_count = o.cost_count + EXCLUDED.cost_count,
    cost_sum = o.cost_sum + EXCLUDED.cost_sum,
    cost_sumsq = o.cost_sumsq + EXCLUDED.cost_sumsq,
    input_tokens_count = o.input_tokens_count + EXCLUDED.input_tokens_count,
    input_tokens_sum = o.input_tokens_sum + EXCLUDED.input_tokens_sum,
    output_tokens_count = o.output_tokens_count + EXCLUDED.output_tokens_count,
    output_tokens_sum = o.output_tokens_sum + EXCLUDED.output_tokens_sum,
    scores = outcomes_add_moments(o.scores, EXCLUDED.scores),
    error_types = outcomes_add_counts(o.error_types, EXCLUDED.error_types)
"""


def batch_apply(*, batch_id: str) -> int:
    """Add a taken batch to OutcomeMinute rows, once: returns the rows written (0 when the batch
    was applied before). Safe to call again after a crash at any point, and concurrently."""
    aggregates = batch_read(batch_id)
    params: list[list[Any]] = []
    for key, fields in aggregates.items():
        where = parse_key(key)
        t = minute_totals(fields)
        params.append(
            [
                datetime.fromtimestamp(where.minute * 60, tz=UTC),
                where.prompt_id,
                where.version_id,
                where.rollout_id,
                where.arm,
                t.samples,
                t.errors,
                t.latency_count,
                t.latency_sum,
                t.latency_sumsq,
                orjson.dumps(t.latency_histogram).decode(),
                t.cost_count,
                t.cost_sum,
                t.cost_sumsq,
                t.input_tokens_count,
                t.input_tokens_sum,
                t.output_tokens_count,
                t.output_tokens_sum,
                orjson.dumps(t.scores).decode(),
                orjson.dumps(t.error_types).decode(),
            ]
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RECORD_BATCH, [batch_id, datetime.now(UTC), len(params)])
        if cursor.fetchone() is None:
            return 0
        if params:
            cursor.executemany(_ADD_ROW, params)
    return len(params)
