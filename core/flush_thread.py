"""A thread of this process that calls a flush every few seconds: what counts on the request path
in memory (exposures, metrics) reaches Redis or Prometheus from it, so a request never waits on
either. It starts with the first use, afresh in a forked child (gunicorn's and granian's workers
are forks: the parent's thread is not there), and the flush runs once more at exit."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class FlushThread:
    def __init__(self, name: str, flush: Callable[[], None], seconds: float) -> None:
        self.name, self.flush, self.seconds = name, flush, seconds
        self.thread: threading.Thread | None = None  # read on every use: starting is the rare case
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forked)
        atexit.register(flush)

    def start(self) -> None:
        with self._lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self.thread.start()

    def _forked(self) -> None:
        self._lock = threading.Lock()  # the fork may have copied it held
        self.thread = None

    def _run(self) -> None:
        while True:
            time.sleep(self.seconds)
            try:
                self.flush()
            except Exception:  # the thread must outlive any one failure
                logger.exception("%s: flush failed", self.name)
