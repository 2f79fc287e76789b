"""Prometheus metrics (``/metrics`` serves them: ``core.operations``).

Every web worker (granian's or gunicorn's) is a process of its own: when
``PROMETHEUS_MULTIPROC_DIR`` is set (``devstack.stack`` sets it to ``<data dir>/prometheus`` and
empties it at start), each process writes its samples there and ``/metrics`` adds them up.
Without it (tests, ``manage.py``), the process's own registry is served.

In multiprocess mode every update of a series takes a lock, a ``getpid()`` system call and a
write to its file, which is too much for every resolve: the serving path's series (resolves by
prompt and arm, the serving views' latency histogram) are counted in memory by
``RequestMetrics`` and added to the series by a thread of the process every
``FLUSH_SECONDS``, and by ``/metrics`` before it answers (so a worker's own counts are exact and
the others' lag by at most that). Prompt names become label values only for prompts that
exist, at most ``MAX_PROMPT_LABELS`` of them per process; later names are counted as
``other``. Unit ids never become labels. Ingest counts once per batch, never per event.

The series of the whole service (the controller, the flush, webhooks, active rollouts) are in
``core.cluster_metrics``.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Callable

from prometheus_client import Counter, Histogram

from core.flush_thread import FlushThread

MAX_PROMPT_LABELS = 200
OTHER = "other"
FLUSH_SECONDS = 1.0
SERVING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

resolves_total = Counter(
    "promptramp_resolves_total",
    "Prompts resolved (resolve and render), by prompt and arm.",
    ["prompt", "arm"],
)
stale_serves_total = Counter(
    "promptramp_stale_serves_total", "Answers given from a serving state that could not be confirmed."
)
request_seconds = Histogram(
    "promptramp_serving_request_seconds",
    "Time spent in the serving views (resolve, render, snapshot), by endpoint.",
    ["endpoint"],
    buckets=SERVING_BUCKETS,
)
state_reads_total = Counter(
    "promptramp_state_cache_hits_total", "Reads of a per-process state cache (API keys, serving).", ["state"]
)
state_rebuilds_total = Counter(
    "promptramp_state_cache_rebuilds_total",
    "Rebuilds of a per-process state cache from PostgreSQL, by outcome: ok (whole), updated (only "
    "what changed), failed.",
    ["state", "outcome"],
)

events_total = Counter(
    "promptramp_events_total",
    "Outcome events of batches answered 202, by result: accepted (new), duplicate (seen before) or "
    "unmatched (a late score whose call is unknown, not stored).",
    ["result"],
)
event_batches_refused_total = Counter(
    "promptramp_event_batches_refused_total",
    "Batches of outcome events refused whole, by the error code answered (invalid_events, "
    "too_large, prompt_not_allowed, ingest_backlog, unavailable, rate_limited, …).",
    ["reason"],
)
sdk_exposures_total = Counter(
    "promptramp_sdk_exposures_total",
    "Exposures (local resolutions and shadow runs) SDKs reported with their events, each batch_id once.",
)
events_accepted = events_total.labels("accepted")
events_duplicate = events_total.labels("duplicate")
events_unmatched = events_total.labels("unmatched")
# Reported from 0 on, so a first refusal is an increase to Prometheus.
for _code in (
    "invalid_events",
    "too_large",
    "prompt_not_allowed",
    "ingest_backlog",
    "unavailable",
    "rate_limited",
):
    event_batches_refused_total.labels(_code)

_resolve_counters: dict[tuple[str, str], Callable[[float], None]] = {}
_prompt_labels: set[str] = set()


class RequestMetrics:
    """The serving path's updates, added up in this process until the next flush."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the parent's counts are the parent's
        self._flusher = FlushThread("metrics", self.flush, FLUSH_SECONDS)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._resolves: dict[tuple[str, str], int] = {}
        self._seconds: dict[str, list[float]] = {}  # per endpoint: the sum, then a count per bucket

    def served(self, endpoint: str, seconds: float, prompt: str, arm: str) -> None:
        """One request of ``endpoint`` that served ``prompt`` from ``arm`` (a resolve or a render)
        and took ``seconds``: one update of both series."""
        with self._lock:
            self._add_seconds(endpoint, seconds)
            key = (prompt, arm)
            self._resolves[key] = self._resolves.get(key, 0) + 1
        if self._flusher.thread is None:
            self._flusher.start()

    def observe(self, endpoint: str, seconds: float) -> None:
        """One request of ``endpoint`` that took ``seconds``."""
        with self._lock:
            self._add_seconds(endpoint, seconds)
        if self._flusher.thread is None:
            self._flusher.start()

    def _add_seconds(self, endpoint: str, seconds: float) -> None:
        """Counted in the first bucket whose bound is at least ``seconds``, as
        ``Histogram.observe`` counts it (under the lock)."""
        tally = self._seconds.get(endpoint)
        if tally is None:
            tally = self._seconds[endpoint] = [0.0] * (len(SERVING_BUCKETS) + 2)
        tally[0] += seconds
        tally[bisect_left(SERVING_BUCKETS, seconds) + 1] += 1  # past the end: the +Inf bucket

    def flush(self) -> None:
        with self._lock:
            resolves, self._resolves = self._resolves, {}
            seconds, self._seconds = self._seconds, {}
        for (prompt, arm), count in resolves.items():
            inc = _resolve_counters.get((prompt, arm))
            if inc is None:
                inc = _bind_resolve_counter(prompt, arm)
            inc(count)
        for endpoint, tally in seconds.items():
            _histogram_add(request_seconds.labels(endpoint), tally)


def _bind_resolve_counter(prompt: str, arm: str) -> Callable[[float], None]:
    label = prompt
    if prompt not in _prompt_labels:
        if len(_prompt_labels) < MAX_PROMPT_LABELS:
            _prompt_labels.add(prompt)
        else:
            label = OTHER
    inc: Callable[[float], None] = resolves_total.labels(label, arm).inc
    _resolve_counters[(prompt, arm)] = inc
    return inc


def _histogram_add(child: Histogram, tally: list[float]) -> None:
    """Many observations at once: what ``observe`` writes for each of them, as one update of the
    sum and one per bucket (prometheus_client has no public call for it; its version is pinned
    and tests/serving/test_metrics.py checks the series this gives)."""
    child._sum.inc(tally[0])
    for value, count in zip(child._buckets, tally[1:], strict=True):
        if count:
            value.inc(count)


request_metrics = RequestMetrics()
count_served = request_metrics.served
observe_seconds = request_metrics.observe
