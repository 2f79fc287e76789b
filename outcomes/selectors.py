"""Reading outcomes: per-arm statistics of a rollout over a window, and per-minute series.

They read PostgreSQL only. Events reach it through the flush, which beat runs every
PROMPTRAMP_FLUSH_SECONDS (2 s by default), so an event answered 202 shows here a few seconds
later. Windows are made of whole minutes: a minute counts when it overlaps ``[since, until)``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from outcomes.models import OutcomeMinute
from rollouts.sources import ROLLOUT_ARMS
from rollouts.stats import ArmStats, Moments, histogram_from_counts, histogram_from_json

MINUTE = timedelta(minutes=1)

_SUMS = (
    "samples",
    "errors",
    "latency_count",
    "latency_sum",
    "latency_sumsq",
    "cost_count",
    "cost_sum",
    "cost_sumsq",
)


def _window(
    rollout_id: int, since: datetime | None, until: datetime | None, arms: tuple[str, ...]
) -> tuple[str, list[Any]]:
    where, params = ["rollout_id = %s", "arm = ANY(%s)"], list[Any]([rollout_id, list(arms)])
    if since is not None:
        where.append("minute > %s")
        params.append(since - MINUTE)
    if until is not None:
        where.append("minute < %s")
        params.append(until)
    return " AND ".join(where), params


def arm_stats(
    *,
    rollout_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
    arms: tuple[str, ...] = ROLLOUT_ARMS,
) -> dict[str, ArmStats]:
    """Each arm of `ROLLOUT_ARMS` (or of ``arms``) with the ArmStats of the rollout's outcomes:
    all of them when ``since`` and ``until`` are None, else the minutes overlapping ``[since,
    until)``. Three grouped queries, whatever the length of the window. Outcomes of the
    ``override`` arm are read only when asked for: they never enter a gate's statistics."""
    where, params = _window(rollout_id, since, until, arms)
    totals: dict[str, tuple[Any, ...]] = {}
    histograms: dict[str, dict[int, int]] = {arm: {} for arm in arms}
    scores: dict[str, list[tuple[str, Moments]]] = {arm: [] for arm in arms}
    with connection.cursor() as cursor:
        sums = ", ".join(f"sum({column})" for column in _SUMS)
        cursor.execute(f"SELECT arm, {sums} FROM outcomes_outcomeminute WHERE {where} GROUP BY arm", params)
        for arm, *columns in cursor.fetchall():
            totals[arm] = tuple(columns)
        cursor.execute(
            "SELECT arm, key::int, sum(value::bigint) FROM outcomes_outcomeminute, "
            f"jsonb_each_text(latency_histogram) WHERE {where} GROUP BY arm, key",
            params,
        )
        for arm, index, count in cursor.fetchall():
            histograms.setdefault(arm, {})[index] = int(count)
        cursor.execute(
            "SELECT arm, key, sum((value->>'count')::bigint), sum((value->>'sum')::float8), "
            "sum((value->>'sumsq')::float8) FROM outcomes_outcomeminute, jsonb_each(scores) "
            f"WHERE {where} GROUP BY arm, key ORDER BY arm, key",
            params,
        )
        for arm, name, count, total, total_sq in cursor.fetchall():
            scores.setdefault(arm, []).append((name, Moments(int(count), total, total_sq)))
    return {
        arm: _arm_stats(totals[arm], histograms[arm], scores[arm]) if arm in totals else ArmStats()
        for arm in arms
    }


def _arm_stats(
    totals: tuple[Any, ...], histogram: dict[int, int], scores: list[tuple[str, Moments]]
) -> ArmStats:
    samples, errors, latency_count, latency_sum, latency_sumsq, cost_count, cost_sum, cost_sumsq = totals
    return ArmStats(
        samples=int(samples),
        errors=int(errors),
        latency=Moments(int(latency_count), latency_sum, latency_sumsq),
        histogram=histogram_from_counts(histogram),
        cost=Moments(int(cost_count), cost_sum, cost_sumsq),
        scores=tuple(scores),
    )


def arm_series(*, rollout_id: int, since: datetime, until: datetime) -> list[tuple[datetime, str, ArmStats]]:
    """``(minute, arm, ArmStats)`` for each minute of each arm with outcomes in the window,
    oldest first: the data of per-arm charts (baseline and candidate)."""
    where, params = _window(rollout_id, since, until, ROLLOUT_ARMS)
    rows = OutcomeMinute.objects.raw(
        f"SELECT * FROM outcomes_outcomeminute WHERE {where} ORDER BY minute, arm", params
    )
    return [
        (
            row.minute,
            row.arm,
            ArmStats(
                samples=row.samples,
                errors=row.errors,
                latency=Moments(row.latency_count, row.latency_sum, row.latency_sumsq),
                histogram=histogram_from_json(row.latency_histogram),
                cost=Moments(row.cost_count, row.cost_sum, row.cost_sumsq),
                scores=tuple(
                    sorted(
                        (name, Moments(int(m["count"]), float(m["sum"]), float(m["sumsq"])))
                        for name, m in row.scores.items()
                    )
                ),
            ),
        )
        for row in rows
    ]
