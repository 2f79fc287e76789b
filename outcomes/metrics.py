"""Ingest's metrics of the whole service (see ``core.cluster_metrics``): how many aggregates wait
in Redis, the bound past which POST /api/v1/events sheds load, and the flush lag, read from Redis
when /metrics is scraped. (Events accepted, duplicate and refused are counted by the web process
that answered: ``core.metrics``.)

Aggregates a flush could not apply are kept in Redis and counted (``unapplied``,
outcomes.pending), for an operator to look at.

The flush lag: every event accepted more than that many seconds ago is in PostgreSQL. A flush
that finds nothing more to take records when it looked (``promptramp:metrics``); while
aggregates wait, the lag is the time since then, and 0 when none wait.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric

from core.cluster_metrics import SharedTimestamp, record, shared
from outcomes.pending import batches_open, pending_count, unapplied_count

CAUGHT_UP = shared(
    SharedTimestamp(
        "promptramp_ingest_flush_caught_up_timestamp_seconds",
        "When a flush last found no more aggregates to take (all accepted before it are in PostgreSQL).",
    )
)


def caught_up_record(*, at: float) -> None:
    record([], moments=[CAUGHT_UP], now=at)


def read_gauges() -> Sequence[Metric]:
    count = pending_count()
    waiting = count > 0 or bool(batches_open())
    pending = GaugeMetricFamily(
        "promptramp_ingest_pending_aggregates",
        "Outcome aggregates waiting in Redis for a flush to take them.",
    )
    pending.add_metric([], count)
    limit = GaugeMetricFamily(
        "promptramp_ingest_pending_limit",
        "Pending aggregates past which POST /api/v1/events answers 503 (PROMPTRAMP_INGEST_MAX_PENDING).",
    )
    limit.add_metric([], settings.PROMPTRAMP_INGEST_MAX_PENDING)
    unapplied = GaugeMetricFamily(
        "promptramp_ingest_unapplied_aggregates",
        "Outcome aggregates a flush could not apply to PostgreSQL, kept in Redis (the log says why).",
    )
    unapplied.add_metric([], unapplied_count())
    families: list[Metric] = [pending, limit, unapplied]
    caught_up = CAUGHT_UP.read()
    if not waiting or caught_up is not None:
        lag = GaugeMetricFamily(
            "promptramp_ingest_flush_lag_seconds",
            "Events accepted longer ago than this are all in PostgreSQL (0 when nothing waits).",
        )
        lag.add_metric([], 0 if not waiting else max(0.0, time.time() - (caught_up or 0.0)))
        families.append(lag)
    return families
