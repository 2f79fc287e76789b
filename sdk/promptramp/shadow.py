"""Shadow runs: the candidate a shadow step hands out, run unseen in a small background pool.

`ShadowRunner.submit` never blocks and never raises: a run is admitted while fewer than
`per_minute` runs were admitted in the last 60 seconds and the queue has room, else it is
dropped and counted. At most `concurrency` runs go at once, each on a pool thread, never on the
caller's. A run is timed from its start (the time it waited in the queue is not the candidate's)
and reported as arm `shadow` through `report`; a callback that raises is reported as an error.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .events import Outcome

logger = logging.getLogger("promptramp")

ShadowCallback = Callable[[Outcome], object]
WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ShadowCounts:
    """What became of the shadow runs handed to the pool."""

    started: int = 0
    succeeded: int = 0  # the callback returned
    failed: int = 0  # the callback raised (reported as an error)
    dropped_rate: int = 0  # over the per-minute cap
    dropped_queue: int = 0  # the queue was full, or the client closed (and its wait ended) first
    running: int = 0
    queued: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_rate + self.dropped_queue


class ShadowRunner:
    def __init__(
        self,
        report: Callable[[Outcome, float], None],
        *,
        concurrency: int,
        per_minute: int,
        queue_size: int,
    ) -> None:
        if concurrency < 1 or per_minute < 0 or queue_size < 0:
            raise ValueError("shadow concurrency must be >= 1, per_minute and queue_size >= 0")
        self._report = report
        self._concurrency = concurrency
        self._per_minute = per_minute
        self._queue_size = queue_size
        self._queue: deque[tuple[Outcome, ShadowCallback]] = deque()
        self._admitted: deque[float] = deque()  # time.monotonic() of each admission in the window
        self._threads: list[threading.Thread] = []
        self._counts = dict.fromkeys(("started", "succeeded", "failed", "dropped_rate", "dropped_queue"), 0)
        self._running = 0
        self._closed = False
        self._lock = threading.Condition()

    def submit(self, outcome: Outcome, callback: ShadowCallback) -> bool:
        """Queue a run of ``callback`` with ``outcome`` (its `prompt` is the shadow); false when
        it was dropped."""
        now = time.monotonic()
        with self._lock:
            while self._admitted and self._admitted[0] <= now - WINDOW_SECONDS:
                self._admitted.popleft()
            waiting = self._running + len(self._queue)
            if self._closed or waiting >= self._concurrency + self._queue_size:
                return self._drop("dropped_queue")
            if len(self._admitted) >= self._per_minute:
                return self._drop("dropped_rate")
            self._admitted.append(now)
            self._queue.append((outcome, callback))
            if len(self._threads) < min(self._concurrency, waiting + 1):
                thread = threading.Thread(target=self._work, name="promptramp-shadow", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._lock.notify()
        return True

    def counts(self) -> ShadowCounts:
        with self._lock:
            return ShadowCounts(**self._counts, running=self._running, queued=len(self._queue))

    def close(self, timeout: float) -> None:
        """Admit nothing more, and give the runs queued and in progress up to ``timeout`` to
        end (their outcomes are reported); what is still queued then is dropped, counted."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            self._lock.wait_for(lambda: not self._queue and self._running == 0, timeout)
            self._counts["dropped_queue"] += len(self._queue)
            self._queue.clear()
            self._lock.notify_all()

    def _drop(self, reason: str) -> bool:
        self._counts[reason] += 1
        if self._counts[reason] in (1, 10, 100) or self._counts[reason] % 1000 == 0:
            logger.warning(
                "shadow run dropped (%s): %d so far", reason.removeprefix("dropped_"), self._counts[reason]
            )
        return False

    def _work(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                outcome, callback = self._queue.popleft()
                self._running += 1
                self._counts["started"] += 1
            started = time.perf_counter()
            try:
                callback(outcome)
            except Exception as error:  # the candidate's failure is its outcome, never the caller's
                outcome.error = True
                outcome.error_type = outcome.error_type or type(error).__name__
            try:
                self._report(outcome, started)
            except ValueError as error:  # a figure the callback set that the server would refuse
                logger.warning("shadow outcome not reported: %s", error)
            with self._lock:
                self._running -= 1
                self._counts["failed" if outcome.error else "succeeded"] += 1
                self._lock.notify_all()
