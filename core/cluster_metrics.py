"""Metrics of the whole service rather than of one process: counts of work the Celery workers do
(they serve no HTTP), and values read from PostgreSQL and Redis when /metrics is scraped.

* Counters and histograms (``SharedCounter``, ``SharedHistogram``) and last-moment timestamps
  (``SharedTimestamp``) are kept in one Redis hash, ``promptramp:metrics``: whichever process
  did the work adds to it (one pipelined call, after the work committed), and every web
  process's /metrics reads the whole hash. So they are exact across processes and nodes, survive
  the restart of any process and need no shared directory.
* Gauges of the current state (active rollouts' percent and state, the outbox backlog, pending
  aggregates, the flush lag) are computed at scrape time by the readers the apps register with
  ``add_reader`` (``rollouts.metrics``, ``outcomes.metrics``).

Every web process answers the same values for these series: with several web processes scraped
as several targets, queries take ``max without (instance)`` (deploy/ does).

A failure to count (Redis down) is logged and the work goes on: metrics never fail the work. A
failure to read at scrape time leaves those series out of that scrape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from django.db import DatabaseError
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from core.redis_client import get_redis

KEY = "promptramp:metrics"
log = logging.getLogger(__name__)


def _field(*parts: str) -> str:
    return json.dumps(parts, separators=(",", ":"))


@dataclass(frozen=True)
class SharedCounter:
    """A counter; the label values in ``known`` are reported from 0 on, so the first increment
    is an increase to Prometheus (a series that appears at 1 shows none)."""

    name: str  # without _total
    documentation: str
    labels: tuple[str, ...]
    known: tuple[tuple[str, ...], ...] = ()

    def by(self, *values: str, amount: float = 1) -> tuple[str, float]:
        """The increment of the series with these label values, for `record`."""
        assert len(values) == len(self.labels), self.name
        return _field(self.name, *values), amount

    def family(self, fields: dict[tuple[str, ...], float]) -> Metric:
        values = dict.fromkeys(self.known, 0.0)
        for parts, value in fields.items():
            if parts[0] == self.name and len(parts) == len(self.labels) + 1:
                values[parts[1:]] = value
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in sorted(values.items()):
            family.add_metric(list(labels), value)
        return family


@dataclass(frozen=True)
class SharedHistogram:
    name: str
    documentation: str
    buckets: tuple[float, ...]

    def observe(self, seconds: float) -> list[tuple[str, float]]:
        """The increments of one observation, for `record`."""
        increments = [(_field(self.name, "sum"), seconds), (_field(self.name, "count"), 1.0)]
        return increments + [(_field(self.name, repr(b)), 1.0) for b in self.buckets if seconds <= b]

    def family(self, fields: dict[tuple[str, ...], float]) -> Metric:
        """Reported from 0 on, as counters are."""
        count = fields.get((self.name, "count"), 0.0)
        buckets = [(repr(b), fields.get((self.name, repr(b)), 0.0)) for b in self.buckets]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], [*buckets, ("+Inf", count)], fields.get((self.name, "sum"), 0.0))
        return family


@dataclass(frozen=True)
class SharedTimestamp:
    name: str
    documentation: str

    def read(self) -> float | None:
        """The moment last recorded (Unix seconds), None if never."""
        value = get_redis().hget(KEY, _field(self.name))
        return None if value is None else float(value)

    def family(self, fields: dict[tuple[str, ...], float]) -> Metric | None:
        value = fields.get((self.name,))
        if value is None:
            return None
        family = GaugeMetricFamily(self.name, self.documentation)
        family.add_metric([], value)
        return family


Shared = SharedCounter | SharedHistogram | SharedTimestamp
S = TypeVar("S", SharedCounter, SharedHistogram, SharedTimestamp)
_shared: list[Shared] = []
_readers: list[Callable[[], Iterable[Metric]]] = []


def shared(metric: S) -> S:
    """Declare a shared series: /metrics reports it from the Redis hash."""
    _shared.append(metric)
    return metric


def add_reader(reader: Callable[[], Iterable[Metric]]) -> None:
    """Register a function /metrics calls at scrape time for gauges of the current state."""
    if reader not in _readers:
        _readers.append(reader)


def record(
    increments: Sequence[tuple[str, float]],
    *,
    moments: Sequence[SharedTimestamp] = (),
    now: float | None = None,
) -> None:
    """Add the increments to the shared hash and set the timestamps to ``now`` (Unix seconds, the
    present unless given), in one round trip."""
    if not increments and not moments:
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        for field, amount in increments:
            pipe.hincrbyfloat(KEY, field, amount)
        if moments:
            at = time.time() if now is None else now
            pipe.hset(KEY, mapping={_field(moment.name): at for moment in moments})
        pipe.execute()
    except RedisError as error:
        log.warning("metrics not counted (Redis: %s)", type(error).__name__)


class ClusterCollector(Collector):
    """The shared series and the readers' gauges, for /metrics."""

    def collect(self) -> Iterable[Metric]:
        try:
            raw = get_redis().hgetall(KEY)
        except RedisError as error:
            log.warning("shared metrics not read (Redis: %s)", type(error).__name__)
        else:
            fields = {tuple(json.loads(k)): float(v) for k, v in raw.items()}
            for metric in _shared:
                family = metric.family(fields)
                if family is not None:
                    yield family
        for reader in _readers:
            try:
                yield from list(reader())
            except (DatabaseError, RedisError) as error:
                log.warning("metrics of %s not read: %s", reader.__module__, type(error).__name__)
