"""The client: local resolution from a cached snapshot, and outcome reporting."""

import atexit
import contextvars
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

from .errors import PromptUnavailable
from .event_rules import is_event_id
from .events import (
    EventCounts,
    EventSender,
    Outcome,
    late_score_event,
    outcome_event,
    retry_after_seconds,
)
from .result import ResolvedPrompt
from .shadow import ShadowCallback, ShadowCounts, ShadowRunner
from .snapshot import PromptVersion, Snapshot, UnsupportedFormat
from .stream import EventStream, StreamEvent, stream_url
from .templating import Message
from .transport import NETWORK_ERRORS, Transport

logger = logging.getLogger("promptramp")

Default = str | list[Message]
# A stream silent this long is taken for dead (the server sends a keepalive every 15 s).
STREAM_READ_TIMEOUT = 60.0
STREAM_RETRY_SECONDS = 0.5  # the wait before reconnecting (× 0.5–1); doubled after each failure
SNAPSHOT_ERRORS = (ValueError, KeyError, TypeError, AttributeError)
MAX_ATTRIBUTES = 20  # as the server takes


class Client:
    """Resolves prompts locally from a snapshot that background threads keep current.

    `get` never touches the network: it reads the last snapshot the server sent (kept when later
    refreshes fail), else a caller-supplied default, else raises PromptUnavailable.
    The snapshot's server names its stream (`Link: <…>; rel="stream"`): when it is on the same
    host, a thread follows it and applies each change as it comes; otherwise, or while the stream
    cannot be had, a thread polls every `refresh_interval`. A snapshot the server has not
    confirmed (a stream event or keepalive, or a poll, unless the server says its own state is
    stale) for 3 × `refresh_interval` answers `stale`. `on_snapshot(snapshot)` is called on a
    background thread each time a new snapshot is in use.
    Reported outcomes are posted in background batches and flushed on `close` and at exit, with
    the counts of the rollouts' arms `get` served and of the shadow runs it started (exposures:
    the server's traffic check reads them); `score` adds scores to a call already reported (an
    LLM judge, a user's thumbs-up).
    A snapshot of a format this SDK does not know is not used: the last one keeps serving, its
    answers are `stale`, `unsupported_format` says which format came, and it is logged.
    Shadow runs (`get(..., shadow=callback)`) go to a background pool of at most
    `shadow_concurrency` threads, at most `shadow_per_minute` a minute, with `shadow_queue` more
    waiting; what exceeds them is dropped and counted (`shadow_counts`).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        refresh_interval: float = 5.0,
        timeout: float = 2.0,
        initial_timeout: float | None = 1.0,
        defaults: Mapping[str, Default] | None = None,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        buffer_size: int = 10_000,
        max_backoff: float = 60.0,
        close_timeout: float = 5.0,
        stream: bool = True,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        shadow_concurrency: int = 4,
        shadow_per_minute: int = 60,
        shadow_queue: int = 16,
    ) -> None:
        self._transport = Transport(base_url, api_key, timeout)
        self._refresh_interval = refresh_interval
        self._stale_after = 3 * refresh_interval
        self._max_backoff = max_backoff
        self._on_snapshot = on_snapshot
        self._close_timeout = close_timeout
        self._defaults = {
            name: PromptVersion.from_default(name, content) for name, content in (defaults or {}).items()
        }
        self._snapshot: Snapshot | None = None
        self._confirmed_at = -float("inf")  # time.monotonic() of the server's last confirmation
        self._poll_not_before = -float("inf")  # a Retry-After of the server's, as time.monotonic()
        self._stale = False  # set by the poll thread once unconfirmed for 3 × refresh_interval
        self._unsupported_format: object = None  # the format of a snapshot refused, while refused
        self._refresh_lock = threading.Lock()
        self._closed = threading.Event()
        self._wake = threading.Event()  # the poll thread looks again (closed, or the stream changed)
        self._stream_url: str | None = None
        self._stream: EventStream | None = None
        self._streaming = False
        # prompt name -> event_id of the last call of it reported in this thread or task
        self._last_calls: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
            f"promptramp-last-calls-{id(self)}"
        )
        self._events = EventSender(
            self._transport.post_events,
            batch_size=batch_size,
            flush_interval=flush_interval,
            capacity=buffer_size,
            max_backoff=max_backoff,
        )
        self._shadows = ShadowRunner(
            self._report_outcome,
            concurrency=shadow_concurrency,
            per_minute=shadow_per_minute,
            queue_size=shadow_queue,
        )
        if initial_timeout:
            self.refresh(timeout=initial_timeout)
        self._refresher = threading.Thread(
            target=self._refresh_periodically, name="promptramp-refresh", daemon=True
        )
        self._refresher.start()
        if stream:
            self._streamer = threading.Thread(
                target=self._stream_forever, name="promptramp-stream", daemon=True
            )
            self._streamer.start()
        atexit.register(self.close)

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot `get` reads, None until the server has answered once."""
        return self._snapshot

    @property
    def unsupported_format(self) -> object:
        """The format of the server's snapshot when this SDK does not know it (the last known
        snapshot keeps serving, answers are `stale`); None otherwise."""
        return self._unsupported_format

    @property
    def streaming(self) -> bool:
        """Whether the client is following the server's snapshot stream right now."""
        return self._streaming

    def get(
        self,
        name: str,
        *,
        unit: str | None = None,
        variables: Mapping[str, object] | None = None,
        default: Default | None = None,
        attributes: Mapping[str, str] | None = None,
        shadow: ShadowCallback | None = None,
    ) -> ResolvedPrompt:
        """The version of `name` that `unit` should use now, rendered when `variables` are given.

        With no unit (None or "") the arm is drawn at random and the result is not sticky.
        `attributes` ({"tenant": "acme"}, at most 20) are what overrides may match besides the
        unit; they stay in this process. `default` (a template, or chat messages) serves when no
        snapshot holds the prompt; it overrides the client's `defaults` for this call. When the
        result carries a `shadow` (a shadow step's sample), `shadow(outcome)` runs it in the
        background pool: `outcome` is an `Outcome` whose `prompt` is the shadow; the run is timed
        (unless the callback sets `latency_ms`) and reported as arm `shadow`, an error if it
        raises. It never blocks or fails this call.
        """
        snapshot = self._snapshot
        if attributes is not None and len(attributes) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes may be given")
        if snapshot is not None:
            served = snapshot.prompts.get(name)
            result = None if served is None else served.resolve(unit, variables, attributes)
            if result is not None:
                if result.rollout_id is not None:
                    self._events.expose(result.rollout_id, result.arm)
                if self._stale or self._unsupported_format is not None:
                    result.stale = True
                if shadow is not None and result.shadow is not None:
                    if self._shadows.submit(Outcome(prompt=result.shadow), shadow) and result.rollout_id:
                        self._events.expose(result.rollout_id, "shadow")
                return result
        if default is not None:
            fallback = PromptVersion.from_default(name, default)
        elif (known := self._defaults.get(name)) is not None:
            fallback = known
        else:
            reason = "not in the snapshot" if snapshot is not None else "the server has not answered yet"
            raise PromptUnavailable(name, f"{reason}, and no default was given")
        result = fallback.resolved("production", None, None, False, variables)
        result.fallback = True
        return result

    @contextmanager
    def track(
        self,
        prompt: ResolvedPrompt | str,
        *,
        unit: str | None = None,
        variables: Mapping[str, object] | None = None,
        default: Default | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Iterator[Outcome]:
        """Time the block and report its outcome; an exception is recorded and re-raised.

        `prompt` is a result of `get`, or a name to `get` with `unit`, `variables`, `default`
        and `attributes`.
        Set cost, tokens and scores on the yielded Outcome; its `prompt` is the result in use,
        its `event_id` the id the call is reported with (to `score` it later, from anywhere).
        """
        result = (
            prompt
            if isinstance(prompt, ResolvedPrompt)
            else self.get(prompt, unit=unit, variables=variables, default=default, attributes=attributes)
        )
        outcome = Outcome(prompt=result)
        started = time.perf_counter()
        try:
            yield outcome
        except Exception as error:
            outcome.error = True
            outcome.error_type = outcome.error_type or type(error).__name__
            self._report_outcome(outcome, started)
            raise
        self._report_outcome(outcome, started)

    def report(
        self,
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
    ) -> str | None:
        """Queue one call's outcome; returns its event_id (`event_id`, or a new one; None for a
        fallback, never sent). The id is also kept on `result.event_id`, and as this thread's
        (or task's) last call of the prompt, for `score`.

        Raises ValueError on a figure the server would refuse (negative, NaN, non-number).
        """
        if result.fallback:
            return None
        event = outcome_event(
            result,
            latency_ms=latency_ms,
            error=error,
            error_type=error_type,
            cost_usd=cost_usd,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            scores=scores,
            ts=ts,
            event_id=event_id,
        )
        self._events.add(event)
        reported = result.event_id = str(event["event_id"])
        self._last_calls.set(self._last_calls.get({}) | {result.name: reported})
        return reported

    def score(self, call: ResolvedPrompt | str, scores: Mapping[str, float]) -> str | None:
        """Report scores of a call already reported, as a late score: they count for that
        call's arm and minute, and a name the call already carries keeps its first value.

        `call` is the call's event_id (from `report`, or `Outcome.event_id` in `track`: store
        it to score the call later from anywhere, any process), a result of `get` that was
        reported, or a prompt name: the last call of that prompt reported in this thread (or
        asyncio task). Returns the late score's event_id, or None when there is no call to
        score (a fallback, or no reported call of that prompt here), which is logged.
        Raises ValueError on scores the server would refuse.
        """
        if isinstance(call, ResolvedPrompt):
            of_event = call.event_id
        elif is_event_id(call):
            of_event = call
        else:
            of_event = self._last_calls.get({}).get(call)
        if of_event is None:
            logger.warning(
                "score: no reported call of %r to score; scores dropped", getattr(call, "name", call)
            )
            return None
        event = late_score_event(of_event, scores)
        self._events.add(event)
        return str(event["event_id"])

    def event_counts(self) -> EventCounts:
        return self._events.counts()

    def shadow_counts(self) -> ShadowCounts:
        """The shadow runs started, succeeded, failed and dropped (over a cap) so far."""
        return self._shadows.counts()

    def flush(self, timeout: float = 5.0) -> bool:
        """Post every queued event now; true when all were settled within `timeout` seconds."""
        return self._events.flush(timeout)

    def refresh(self, timeout: float | None = None) -> bool:
        """Fetch the snapshot now; true when the client then holds the server's current one.

        On failure the last good snapshot stays in use and the cause is logged.
        """
        with self._refresh_lock:
            current = self._snapshot
            try:
                reply = self._transport.get_snapshot(current.etag if current else None, timeout)
            except NETWORK_ERRORS as error:
                logger.warning("snapshot refresh failed: %s", error)
                return False
            if reply.status in (200, 304):
                self._stream_url = stream_url(reply.headers.get("Link"), self._transport.base_url)
            confirms = reply.headers.get("X-Promptramp-Stale") != "1"  # not from an unconfirmed state
            if reply.status == 304 and current is not None:
                self._unsupported_format = None  # the server's snapshot is the one in use
                if confirms:
                    self._confirm()
                return True
            if reply.status != 200:
                logger.warning("snapshot refresh answered %d", reply.status)
                wait = retry_after_seconds(reply.headers.get("Retry-After"))
                if wait is not None:  # 429 or 503: the next poll waits as asked, within max_backoff
                    self._poll_not_before = time.monotonic() + min(wait, self._max_backoff)
                return False
            try:
                snapshot = Snapshot.parse(json.loads(reply.body), reply.headers.get("ETag"))
            except UnsupportedFormat as error:
                self._refuse(error)
                return False
            except SNAPSHOT_ERRORS as error:
                logger.warning("malformed snapshot ignored: %r", error)
                return False
            if current is not None and snapshot.etag == current.etag:
                self._unsupported_format = None  # the same content as the one in use
            elif not (self._streaming and _older(snapshot, current)):  # a web process behind the stream
                self._use(snapshot)
            if confirms:
                self._confirm()
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Stop refreshing, let the shadow runs in progress end (within the timeout) and flush
        the events; true when every event was delivered."""
        self._closed.set()
        self._wake.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        atexit.unregister(self.close)
        wait = self._close_timeout if timeout is None else timeout
        started = time.monotonic()
        self._shadows.close(wait / 2)
        return self._events.close(max(0.0, wait - (time.monotonic() - started)))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _refresh_periodically(self) -> None:
        """Poll once nothing was heard from the server for `refresh_interval` (for two while
        the stream is open: its keepalives confirm the snapshot); mark the snapshot stale once
        nothing was heard for 3 × `refresh_interval`."""
        attempted = time.monotonic()
        while not self._closed.is_set():
            now, confirmed = time.monotonic(), self._confirmed_at
            stale_at = confirmed + self._stale_after
            if now > stale_at and not self._stale:
                self._stale = True
                if self._confirmed_at != confirmed:  # confirmed meanwhile
                    self._stale = False
            quiet = self._refresh_interval * (2 if self._streaming else 1)
            due = max(max(confirmed, attempted) + quiet, self._poll_not_before)
            if now >= due:
                attempted = now
                self.refresh()
                continue
            wake_at = due if self._stale else min(due, stale_at)
            self._wake.wait(max(wake_at - now, 0.001))
            self._wake.clear()

    def _confirm(self) -> None:
        """The server has just confirmed the snapshot in use (or sent a newer one)."""
        self._confirmed_at = time.monotonic()
        self._stale = False

    def _stream_forever(self) -> None:
        """Follow the stream the server names, reconnecting (with Last-Event-ID) after it ends,
        after a short pause that grows with each failure; the poll thread serves meanwhile."""
        failures = 0
        while not self._closed.is_set():
            url = self._stream_url
            if url is None:
                self._closed.wait(min(self._refresh_interval, 1.0))
                continue
            try:
                served = self._follow(url)
            except (*NETWORK_ERRORS, *SNAPSHOT_ERRORS) as error:
                logger.info("snapshot stream interrupted: %r", error)
                served = False
            finally:
                self._streaming = False
                self._wake.set()
            failures = 0 if served else failures + 1
            pause = min(self._max_backoff, STREAM_RETRY_SECONDS * 2 ** min(failures, 10))
            self._closed.wait(pause * random.uniform(0.5, 1.0))  # spread when a server restarts

    def _follow(self, url: str) -> bool:
        """Read one stream until it ends; true when it was served (answered 200)."""
        current = self._snapshot
        stream = self._transport.open_stream(url, current.etag if current else None, STREAM_READ_TIMEOUT)
        self._stream = stream
        try:
            if self._closed.is_set():
                return True
            if stream.status != 200:
                logger.warning("the snapshot stream answered %d; polling meanwhile", stream.status)
                return False
            self._streaming = True
            for event in stream.events():
                if event.event in ("snapshot", "change"):
                    self._apply(event)
                if event.data != "stale":  # a keepalive of a server that is itself unconfirmed
                    self._confirm()
            return True
        finally:
            self._stream = None
            stream.close()

    def _apply(self, event: StreamEvent) -> None:
        """Use the snapshot a `snapshot` event holds, or the current one after a `change`."""
        body = json.loads(event.data)
        with self._refresh_lock:
            current = self._snapshot
            if current is not None and event.id == current.etag:  # a poll brought it first
                self._unsupported_format = None
                return
            try:
                if event.event == "snapshot":
                    self._use(Snapshot.parse(body, event.id))
                elif current is not None:  # a change follows the snapshot this client holds
                    self._use(current.changed(body, event.id))
            except UnsupportedFormat as error:
                self._refuse(error)

    def _refuse(self, error: UnsupportedFormat) -> None:
        """Keep serving the last snapshot (answers marked stale) rather than one this SDK may
        misread; logged once per format."""
        if self._unsupported_format != error.format:
            logger.error("%s: serving the last snapshot; upgrade the promptramp SDK", error)
        self._unsupported_format = error.format

    def _use(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._unsupported_format = None
        if self._on_snapshot is not None:
            try:
                self._on_snapshot(snapshot)
            except Exception:
                logger.exception("on_snapshot raised")

    def _report_outcome(self, outcome: Outcome, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.report(
            outcome.prompt,
            event_id=outcome.event_id,
            latency_ms=elapsed_ms if outcome.latency_ms is None else outcome.latency_ms,
            error=outcome.error,
            error_type=outcome.error_type,
            cost_usd=outcome.cost_usd,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            scores=outcome.scores,
        )


def _older(snapshot: Snapshot, current: Snapshot | None) -> bool:
    """Whether `snapshot` was built before `current` (both with their build times)."""
    if current is None or snapshot.generated_at is None or current.generated_at is None:
        return False
    return snapshot.generated_at < current.generated_at
