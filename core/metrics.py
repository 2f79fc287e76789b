"""Prometheus metrics (``/metrics`` serves them: ``core.operations``).

Every web worker (granian's or gunicorn's) is a process of its own: when
``PROMETHEUS_MULTIPROC_DIR`` is set (``devstack.stack`` sets it to ``<data dir>/prometheus`` and
empties it at start), each process writes its samples there and ``/metrics`` adds them up.
Without it (tests, ``manage.py``), the process's own registry is served.

Updates on the request path go through children bound once per label set (a dict lookup and one
increment). Prompt names become label values only for prompts that exist, at most
``MAX_PROMPT_LABELS`` of them per process; later names are counted as ``other``. Unit ids never
become labels. Ingest counts once per batch, never per event.

The series of the whole service (the controller, the flush, webhooks, active rollouts) are in
``core.cluster_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Histogram

MAX_PROMPT_LABELS = 200
OTHER = "other"

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
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
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

_resolve_counters: dict[tuple[str, str], Callable[[], None]] = {}
_prompt_labels: set[str] = set()


def count_resolve(prompt: str, arm: str) -> None:
    inc = _resolve_counters.get((prompt, arm))
    if inc is None:
        inc = _bind_resolve_counter(prompt, arm)
    inc()


def _bind_resolve_counter(prompt: str, arm: str) -> Callable[[], None]:
    label = prompt
    if prompt not in _prompt_labels:
        if len(_prompt_labels) < MAX_PROMPT_LABELS:
            _prompt_labels.add(prompt)
        else:
            label = OTHER
    inc: Callable[[], None] = resolves_total.labels(label, arm).inc
    _resolve_counters[(prompt, arm)] = inc
    return inc
