"""The client: local resolution from a cached snapshot, and outcome reporting."""

import atexit
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

from .errors import PromptUnavailable
from .events import EventCounts, EventSender, Outcome, outcome_event
from .result import ResolvedPrompt
from .snapshot import PromptVersion, Snapshot
from .templating import Message
from .transport import NETWORK_ERRORS, Transport

logger = logging.getLogger("promptramp")

Default = str | list[Message]


class Client:
    """Resolves prompts locally from a snapshot that a background thread keeps current.

    `get` never touches the network: it reads the last snapshot the server sent (kept when later
    refreshes fail), else a caller-supplied default, else raises PromptUnavailable.
    Reported outcomes are posted in background batches and flushed on `close` and at exit.
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
    ) -> None:
        self._transport = Transport(base_url, api_key, timeout)
        self._refresh_interval = refresh_interval
        self._close_timeout = close_timeout
        self._defaults = {
            name: PromptVersion.from_default(name, content) for name, content in (defaults or {}).items()
        }
        self._snapshot: Snapshot | None = None
        self._refresh_lock = threading.Lock()
        self._closed = threading.Event()
        self._events = EventSender(
            self._transport.post_events,
            batch_size=batch_size,
            flush_interval=flush_interval,
            capacity=buffer_size,
            max_backoff=max_backoff,
        )
        if initial_timeout:
            self.refresh(timeout=initial_timeout)
        self._refresher = threading.Thread(
            target=self._refresh_periodically, name="promptramp-refresh", daemon=True
        )
        self._refresher.start()
        atexit.register(self.close)

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot `get` reads, None until the server has answered once."""
        return self._snapshot

    def get(
        self,
        name: str,
        *,
        unit: str | None = None,
        variables: Mapping[str, object] | None = None,
        default: Default | None = None,
    ) -> ResolvedPrompt:
        """The version of `name` that `unit` should use now, rendered when `variables` are given.

        With no unit (None or "") the arm is drawn at random and the result is not sticky.
        `default` (a template, or chat messages) serves when no snapshot holds the prompt;
        it overrides the client's `defaults` for this call.
        """
        snapshot = self._snapshot
        if snapshot is not None:
            served = snapshot.prompts.get(name)
            if served is not None:
                return served.resolve(unit, variables)
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
    ) -> Iterator[Outcome]:
        """Time the block and report its outcome; an exception is recorded and re-raised.

        `prompt` is a result of `get`, or a name to `get` with `unit`, `variables` and `default`.
        Set cost, tokens and scores on the yielded Outcome; its `prompt` is the result in use.
        """
        result = (
            prompt
            if isinstance(prompt, ResolvedPrompt)
            else self.get(prompt, unit=unit, variables=variables, default=default)
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
    ) -> str | None:
        """Queue one call's outcome; returns its event_id (None for a fallback, never sent).

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
        )
        self._events.add(event)
        return str(event["event_id"])

    def event_counts(self) -> EventCounts:
        return self._events.counts()

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
            if reply.status == 304 and current is not None:
                return True
            if reply.status != 200:
                logger.warning("snapshot refresh answered %d", reply.status)
                return False
            try:
                self._snapshot = Snapshot.parse(json.loads(reply.body), reply.headers.get("ETag"))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                logger.warning("malformed snapshot ignored: %r", error)
                return False
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Stop refreshing and flush the events; true when every event was delivered."""
        self._closed.set()
        atexit.unregister(self.close)
        return self._events.close(self._close_timeout if timeout is None else timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _refresh_periodically(self) -> None:
        while not self._closed.wait(self._refresh_interval):
            self.refresh()

    def _report_outcome(self, outcome: Outcome, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.report(
            outcome.prompt,
            latency_ms=elapsed_ms if outcome.latency_ms is None else outcome.latency_ms,
            error=outcome.error,
            error_type=outcome.error_type,
            cost_usd=outcome.cost_usd,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            scores=outcome.scores,
        )
