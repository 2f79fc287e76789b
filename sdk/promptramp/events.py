"""Outcome events: building them, buffering them, and shipping them in background batches,
with the counts of the client's local resolutions (exposures) per rollout, arm and minute."""

import json
import logging
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from .event_rules import MAX_EXPOSURES, RULES, figures_problems, late_score_problems
from .result import ResolvedPrompt
from .transport import NETWORK_ERRORS, Reply

logger = logging.getLogger("promptramp")

Event = dict[str, Any]
Exposure = dict[str, Any]  # {"rollout_id", "arm", "minute", "count"}
Post = Callable[..., Reply]  # (events, *, batch_id, exposures) -> the server's reply
# Exposure rows kept for sending (the oldest are dropped past this: a server down for long).
MAX_WAITING_EXPOSURES = 10_000


def outcome_event(
    result: ResolvedPrompt,
    *,
    latency_ms: float | None = None,
    error: bool = False,
    error_type: str | None = None,
    cost_usd: float | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    scores: Mapping[str, float] | None = None,
    ts: datetime | None = None,
    event_id: str | None = None,
) -> Event:
    """The event body for one call (a new ``event_id`` unless given); raises ValueError on a
    value the server would refuse.

    One bad event makes the server refuse its whole batch, so it is refused here instead, by
    the server's own rules (``event_rules``).
    """
    scores = dict(scores or {})
    problems = figures_problems(
        latency_ms=latency_ms,
        error_type=error_type,
        cost_usd=cost_usd,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        scores=scores,
    )
    if problems:
        raise ValueError("; ".join(problems))
    moment = (ts or datetime.now(UTC)).astimezone(UTC)
    event: Event = {
        "event_id": event_id or str(uuid.uuid4()),
        "prompt": result.name,
        "version": result.version,
        "rollout_id": result.rollout_id,
        "arm": result.arm,
        "latency_ms": latency_ms,
        "error": bool(error),
        "error_type": error_type,
        "cost_usd": cost_usd,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "scores": scores,
        "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if result.shadow_sample and result.arm == "baseline":
        event["shadow_sample"] = True  # compared with the shadow runs of the same units
    return event


def late_score_event(of_event: str, scores: Mapping[str, float]) -> Event:
    """The event body of a late score of the call ``of_event``; raises ValueError on what the
    server would refuse (``event_rules``)."""
    scores = dict(scores)
    problems = late_score_problems(of_event, scores)
    if problems:
        raise ValueError("; ".join(problems))
    event = {"event_id": str(uuid.uuid4()), "of_event": of_event, "scores": scores}
    assert set(event) == set(RULES["late_score_fields"])
    return event


@dataclass(slots=True)
class Outcome:
    """What `Client.track` yields: the prompt in use, the call's `event_id` (known from the
    start, to hand to whoever scores the call later), and the call's figures to fill in."""

    prompt: ResolvedPrompt
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    latency_ms: float | None = None  # measured by track unless set here
    error: bool = False
    error_type: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventCounts:
    """What became of the events reported so far."""

    enqueued: int = 0  # reported and put in the buffer
    accepted: int = 0  # acknowledged by the server as new
    duplicates: int = 0  # acknowledged by the server as already received
    unmatched: int = 0  # late scores the server had no call for (not stored)
    dropped: int = 0  # pushed out of the full buffer (oldest first), or reported after close
    rejected: int = 0  # refused by the server for good (400 and other 4xx)
    retries: int = 0  # delivery attempts that failed and were retried
    pending: int = 0  # buffered or in flight
    exposures_sent: int = 0  # exposures (local resolutions) acknowledged by the server
    exposures_dropped: int = 0  # exposures given up (refused, or pushed out while the server was away)


class EventSender:
    """A bounded buffer of events and the thread that posts them in batches.

    Each batch carries the exposures counted (`expose`) since the last one, stamped with the
    minute they are taken in, and a ``batch_id`` of its own. A batch that fails for a reason that
    may pass (network, 408, 429, 5xx) is retried, with the same ``batch_id``, after its
    `Retry-After` (at most `max_backoff`) or an exponential backoff; the server de-duplicates
    events by event_id and exposures by batch_id, so a retry never double-counts. When the
    server refuses a batch naming the events or exposures it refuses (400 or 403 with their
    ``index`` or ``exposure``: rules that depend on its state, such as the score names of a
    rollout), those are dropped and the rest sent again at once; a batch refused otherwise is
    dropped whole, and logged.
    """

    def __init__(
        self,
        post: Post,
        *,
        batch_size: int,
        flush_interval: float,
        capacity: int,
        max_backoff: float,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be between 1 and 1000")
        self._post = post
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._capacity = capacity
        self._max_backoff = max_backoff
        self._buffer: deque[Event] = deque()
        self._in_flight: list[Event] = []
        self._batch_id = ""
        self._exposed: dict[tuple[int, str], int] = {}  # counted since the last batch
        self._exposed_lock = threading.Lock()
        self._exposures: deque[Exposure] = deque()  # taken, waiting for a batch
        self._in_flight_exposures: list[Exposure] = []
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "enqueued",
                "accepted",
                "duplicates",
                "unmatched",
                "dropped",
                "rejected",
                "retries",
                "exposures_sent",
                "exposures_dropped",
            ),
            0,
        )
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="promptramp-events", daemon=True)
        self._thread.start()

    def add(self, event: Event) -> None:
        with self._lock:
            if self._stop.is_set():
                self._counts["dropped"] += 1
                return
            if len(self._buffer) >= self._capacity:
                self._buffer.popleft()
                self._counts["dropped"] += 1
            self._buffer.append(event)
            self._counts["enqueued"] += 1
            full = len(self._buffer) >= self._batch_size
        if full:
            self._wake.set()

    def expose(self, rollout_id: int, arm: str) -> None:
        """Count one local resolution of a rollout's arm (sent with the next batch)."""
        key = (rollout_id, arm)
        with self._exposed_lock:
            self._exposed[key] = self._exposed.get(key, 0) + 1

    def counts(self) -> EventCounts:
        with self._lock:
            return EventCounts(**self._counts, pending=len(self._buffer) + len(self._in_flight))

    def flush(self, timeout: float) -> bool:
        """Send everything buffered now; true when all of it was settled within `timeout`."""
        self._wake.set()
        with self._lock:
            if self._stop.is_set():
                return not self._pending()
            return self._lock.wait_for(lambda: not self._pending(), timeout)

    def close(self, timeout: float) -> bool:
        """Flush, then stop the thread; true when nothing was left undelivered."""
        delivered = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
        if not delivered:
            logger.warning("%d events not delivered at close", self.counts().pending)
        return delivered

    def _pending(self) -> int:
        """Events and exposures not settled yet: what `flush` waits for."""
        exposures = len(self._exposed) + len(self._exposures) + len(self._in_flight_exposures)
        return len(self._buffer) + len(self._in_flight) + exposures

    def _take_exposures(self) -> None:
        """Move the exposures counted so far into rows of this minute (under ``_lock``)."""
        with self._exposed_lock:
            exposed, self._exposed = self._exposed, {}
        minute = int(time.time() // 60)
        for (rollout_id, arm), count in exposed.items():
            self._exposures.append({"rollout_id": rollout_id, "arm": arm, "minute": minute, "count": count})
        while len(self._exposures) > MAX_WAITING_EXPOSURES:
            self._counts["exposures_dropped"] += self._exposures.popleft()["count"]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            with self._lock:
                if not self._in_flight and not self._in_flight_exposures:
                    self._take_exposures()
                    size = min(self._batch_size, len(self._buffer))
                    self._in_flight = [self._buffer.popleft() for _ in range(size)]
                    rows = min(MAX_EXPOSURES, len(self._exposures))
                    self._in_flight_exposures = [self._exposures.popleft() for _ in range(rows)]
                    self._batch_id = str(uuid.uuid4())
                batch, exposures = self._in_flight, self._in_flight_exposures
            if not batch and not exposures:
                return
            remaining, remaining_exposures, delay = self._deliver(batch, exposures, attempt)
            retried = remaining is batch and remaining_exposures is exposures
            with self._lock:
                self._in_flight, self._in_flight_exposures = remaining, remaining_exposures
                if not remaining and not remaining_exposures:
                    self._lock.notify_all()
                if retried:
                    self._counts["retries"] += 1
            if retried:
                attempt += 1
                self._stop.wait(delay)
            else:
                attempt = 0

    def _deliver(
        self, batch: list[Event], exposures: list[Exposure], attempt: int
    ) -> tuple[list[Event], list[Exposure], float]:
        """Post one batch: what is left to send of its events and exposures (``batch`` and
        ``exposures`` themselves: all of it, after the delay; shorter lists: at once; empty: it
        is settled) and the delay."""
        backoff = min(self._max_backoff, 0.5 * 2.0 ** min(attempt, 16)) * random.uniform(0.5, 1.0)
        try:
            reply = self._post(batch, batch_id=self._batch_id, exposures=exposures)
        except NETWORK_ERRORS as error:
            logger.warning("posting %d events failed: %s", len(batch), error)
            return batch, exposures, backoff
        if 200 <= reply.status < 300:
            answer = _json_object(reply.body)
            with self._lock:
                self._counts["accepted"] += int(answer.get("accepted", len(batch)))
                self._counts["duplicates"] += int(answer.get("duplicates", 0))
                self._counts["unmatched"] += int(answer.get("unmatched", 0))
                self._counts["exposures_sent"] += sum(row["count"] for row in exposures)
            return [], [], 0.0
        if reply.status in (408, 429) or reply.status >= 500:
            wait = retry_after_seconds(reply.headers.get("Retry-After"))
            logger.warning("events answered %d, will retry", reply.status)
            return batch, exposures, backoff if wait is None else min(wait, self._max_backoff)
        named = _refused(reply.body, len(batch), len(exposures)) if reply.status in (400, 403) else None
        refused, refused_rows = named or (set(range(len(batch))), set(range(len(exposures))))
        logger.error(
            "dropping %d of %d events and %d of %d exposure rows the server refused with %d: %s",
            len(refused),
            len(batch),
            len(refused_rows),
            len(exposures),
            reply.status,
            reply.body[:1000].decode(errors="replace"),
        )
        with self._lock:
            self._counts["rejected"] += len(refused)
            self._counts["exposures_dropped"] += sum(exposures[i]["count"] for i in refused_rows)
        return (
            [event for index, event in enumerate(batch) if index not in refused],
            [row for index, row in enumerate(exposures) if index not in refused_rows],
            0.0,
        )


def _refused(body: bytes, events: int, exposures: int) -> tuple[set[int], set[int]] | None:
    """The events and exposure rows a refusal names (``error.details[].index`` and
    ``.exposure``); None when it names none, or one the batch does not have, or a problem of
    neither (the batch as a whole)."""
    error = _json_object(body).get("error")
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list) or not details:
        return None
    indexes: set[int] = set()
    rows: set[int] = set()
    for item in details:
        if not isinstance(item, dict):
            return None
        index, row = item.get("index"), item.get("exposure")
        if type(index) is int and 0 <= index < events:
            indexes.add(index)
        elif type(row) is int and 0 <= row < exposures:
            rows.add(row)
        else:
            return None
    return indexes, rows


def retry_after_seconds(value: str | None) -> float | None:
    """The delay a `Retry-After` header asks for (seconds or an HTTP date), None without one."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
