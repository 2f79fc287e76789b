"""Outcome ingest: a batch of events into Redis (durable, de-duplicated), and Redis into
PostgreSQL's per-minute rows (exactly once).

``events_ingest`` answers a batch with one Lua script call after checking it in plain Python.
``outcome_minutes_flush`` (a Celery beat task every PROMPTRAMP_FLUSH_SECONDS) moves aggregates
to OutcomeMinute rows in three steps, each safe to crash after and to run concurrently:

1. *take*: one script renames pending hashes into a new batch (new events start new hashes);
2. *apply*: one transaction inserts the batch's FlushedBatch row first and adds the aggregates
   to their rows (``INSERT … ON CONFLICT DO UPDATE`` adding counts, sums and histograms). A
   batch whose row exists was applied already, so it is skipped; two flushers applying the same
   batch at once meet on that row's primary key and the second one skips it. An aggregate that
   cannot be applied (a hash that is not one, a rollout deleted since, a sum past what its row
   holds) is set aside in Redis and logged before the others commit, so it holds up none of them;
3. *forget*: one script deletes the batch from Redis.

Every run first finishes the batches a crashed or concurrent run left open, then takes new ones;
a run that finds nothing more to take records it (the flush lag, ``outcomes.metrics``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import DataError, IntegrityError, connection, transaction

from core.prompt_limits import PromptLimits, PromptNotAllowed, prompt_allowed
from outcomes.aggregation import aggregate, minute_totals, parse_key
from outcomes.errors import BatchTooLarge, IngestBacklog, InvalidEvents
from outcomes.event_targets import RolloutRef, events_series, rollouts_lookup
from outcomes.exposures import sdk_exposures_add
from outcomes.metrics import caught_up_record
from outcomes.models import FlushedBatch, OutcomeMinute
from outcomes.pending import (
    MAX_SCORE_NAMES_PER_ROLLOUT,
    MAX_SCORE_NAMES_PER_VERSION,
    PREFIX,
    AddResult,
    CallGroup,
    batch_forget,
    batch_read,
    batch_set_aside,
    batch_take,
    batches_open,
    call_record,
    durability_warn_once,
    events_add,
    score_scope,
)
from outcomes.validation import (
    BatchRejected,
    Event,
    LateScore,
    ReportedExposure,
    exposure_problem,
    parse_batch,
    parse_exposures,
    problem,
)

MAX_PROBLEMS_SHOWN = 1000
FLUSHED_BATCHES_KEPT = timedelta(days=1)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    unmatched: int = 0  # late scores whose call is unknown (not stored)
    exposures: int | None = None  # exposure rows counted (0: a batch_id seen before; None: none sent)
    exposures_total: int = 0  # the sum of the counted rows' counts


def events_ingest(*, body: bytes, now: float, prompts: PromptLimits = None) -> IngestResult:
    """Check a ``{"events": [...], "batch_id"?, "exposures"?}`` body and count its new events
    and its exposures; ``now`` is the arrival time (Unix seconds). All or nothing: one invalid
    event or exposure row refuses the whole batch (InvalidEvents, with each problem's index or
    ``exposure``, field and reason), and so does one event or exposure for a prompt outside the
    key's ``prompts`` (PromptNotAllowed, 403, naming them the same way), a late score of such a
    prompt's call included. Events whose ``event_id`` was seen before (in this batch or within
    the de-duplication window) are counted as duplicates only; the exposures of a ``batch_id``
    seen before are not counted. A late score adds its new score names to its call's arm and
    minute (calls of the batch first); one whose call is unknown is counted as unmatched, and
    not stored.
    """
    try:
        events, late, problems = parse_batch(body, now=now)
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
    first: dict[bytes, int] = {}  # each event_id's first index in the batch
    for index, event_id in [(event.index, event.event_id) for _, event in placed] + [
        (score.index, score.event_id) for score in late
    ]:
        if first.setdefault(event_id, index) > index:
            first[event_id] = index
    kept = set(first.values())
    calls = [(series, event) for series, event in placed if event.index in kept]
    scores = [score for score in late if score.index in kept]
    duplicates = len(placed) + len(late) - len(calls) - len(scores)
    accepted = unmatched = 0
    while calls or scores:
        result = _add(calls, scores, prompts, now)
        if result.busy:
            raise IngestBacklog("Too many outcome aggregates are waiting to be stored; retry shortly.")
        if result.refused_prompts:
            raise _scores_of_other_prompts([scores[p - len(calls)] for p in result.refused_prompts])
        if result.refused_score_names:
            raise _too_many_score_names(calls, scores, result.refused_score_names)
        if not result.duplicates:
            accepted, unmatched = result.added, result.unmatched
            break
        seen, offset = set(result.duplicates), len(calls)
        calls = [item for position, item in enumerate(calls) if position not in seen]
        scores = [item for position, item in enumerate(scores, offset) if position not in seen]
        duplicates += len(seen)
    if not exposures or batch_id is None:
        return IngestResult(accepted=accepted, duplicates=duplicates, unmatched=unmatched)
    if not sdk_exposures_add(batch_id=batch_id, exposures=exposures):
        return IngestResult(accepted=accepted, duplicates=duplicates, unmatched=unmatched, exposures=0)
    total = sum(row.count for row in exposures)
    return IngestResult(accepted, duplicates, unmatched, exposures=len(exposures), exposures_total=total)


def _add(
    calls: list[tuple[str, Event]], scores: list[LateScore], prompts: PromptLimits, now: float
) -> AddResult:
    """One call of the ingest script for these calls and late scores."""
    groups: dict[tuple[str, tuple[str, ...]], CallGroup] = {}
    scopes: dict[str, str] = {}
    batch_prompts: dict[int, str] = {}
    records = []
    for position, (series, event) in enumerate(calls):
        records.append(call_record(event.minute, series))
        scope = scopes.get(series)
        if scope is None:
            where = parse_key(f"{event.minute}:{series}")
            scope = scopes[series] = score_scope(where.rollout_id, where.version_id)
            batch_prompts[where.prompt_id] = event.prompt
        key = (scope, tuple(event.scores))
        group = groups.get(key)
        if group is None:
            group = groups[key] = CallGroup(scope, list(key[1]), [])
        group.positions.append(position)
    return events_add(
        event_ids=[event.event_id for _, event in calls] + [score.event_id for score in scores],
        calls=b"".join(records),
        groups=list(groups.values()),
        increments=aggregate(calls),
        late_of=[score.of_event for score in scores],
        late_scores=[
            [
                (name, repr(float(value)), repr(float(value) * float(value)))
                for name, value in score.scores.items()
            ]
            for score in scores
        ],
        batch_prompts=batch_prompts,
        prompts=prompts,
        now=now,
    )


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


def _scores_of_other_prompts(scores: list[LateScore]) -> PromptNotAllowed:
    return PromptNotAllowed(
        f"{len(scores)} late score(s) of this batch are for calls of prompts this API key may not "
        "report on; nothing from it was stored.",
        details=[
            problem(score.index, "of_event", "this API key is limited to other prompts than this call's")
            for score in scores[:MAX_PROBLEMS_SHOWN]
        ],
    )


def _too_many_score_names(
    calls: list[tuple[str, Event]], scores: list[LateScore], refused: tuple[tuple[int, str], ...]
) -> InvalidEvents:
    problems = []
    for position, name in refused:
        if position < len(calls):
            event = calls[position][1]
            index = event.index
            if event.rollout_id is not None:
                scope = f"rollout {event.rollout_id} already has {MAX_SCORE_NAMES_PER_ROLLOUT} score names"
            else:
                scope = f"version {event.version} already has {MAX_SCORE_NAMES_PER_VERSION} score names"
        else:
            index = scores[position - len(calls)].index
            scope = "the call's rollout (or version) already has all the score names it may have"
        problems.append(problem(index, f"scores.{name}", f"{scope}; no new one is taken"))
    problems.sort(key=lambda p: p["index"])
    invalid = len({p["index"] for p in problems})
    return InvalidEvents(
        f"{invalid} event(s) of this batch bring score names past the {MAX_SCORE_NAMES_PER_ROLLOUT} a "
        f"rollout (or {MAX_SCORE_NAMES_PER_VERSION} a version outside rollouts) may have; nothing "
        "from it was stored.",
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
    was applied before). Its aggregates that cannot be applied are set aside (``unapplied`` in
    outcomes.pending) and logged before the others commit. Safe to call again after a crash at
    any point, and concurrently."""
    aggregates = batch_read(batch_id)
    rows: dict[str, list[Any]] = {}
    refused: dict[str, str] = {}
    for key, fields in aggregates.items():
        try:
            rows[key] = _row(key, fields)
        except (ValueError, OverflowError) as error:
            refused[key] = f"not an aggregate: {error}"
    with transaction.atomic(), connection.cursor() as cursor:
        # foreign keys checked at each row, not at the commit: a row naming a rollout deleted
        # since fails alone
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(_RECORD_BATCH, [batch_id, datetime.now(UTC), len(aggregates)])
        if cursor.fetchone() is None:
            return 0
        try:
            with transaction.atomic():
                cursor.executemany(_ADD_ROW, list(rows.values()))
        except (DataError, IntegrityError):
            for key, params in list(rows.items()):  # one at a time, to find those that fail
                try:
                    with transaction.atomic():
                        cursor.execute(_ADD_ROW, params)
                except (DataError, IntegrityError) as error:
                    refused[key] = " ".join(str(error).split())
                    del rows[key]
        if refused:
            batch_set_aside(batch_id=batch_id, reasons=refused)
            for key, reason in refused.items():
                log.error(
                    "outcome aggregate %s:%s cannot be applied, kept in Redis (%sunapplied): %s",
                    batch_id,
                    key,
                    PREFIX,
                    reason,
                )
    return len(rows)


def _row(key: str, fields: dict[bytes, bytes]) -> list[Any]:
    """The parameters of ``_ADD_ROW`` for an aggregate; ValueError if it is not one."""
    where = parse_key(key)
    if where.arm not in OutcomeMinute.Arm.values:
        raise ValueError(f"unknown arm {where.arm!r}")
    t = minute_totals(fields)
    return [
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
