"""This process's exposure counts: how often its resolves and renders served each arm of each
rollout, buffered in memory and written to Redis (``rollouts.exposures``) by a thread of its
own every `FLUSH_SECONDS`, so a request never waits on Redis.

A request that a rollout answered adds one to its (rollout, split, arm, bucket) count and its
unit, if it has one, to the set of units seen — a dict increment and a set insert under a lock.
A flush swaps the buffers and sends them in one pipeline: the minute's count per arm, the units
to each arm's HyperLogLog (PFADD: only the count of distinct units is kept), and the per-bucket
counts with their running sums of squares (one Lua call per rollout and split). When Redis does
not answer, the counts wait for the next flush (units beyond `MAX_WAITING_UNITS` are dropped:
the distinct count then runs low, never high).

The flushing thread (``core.flush_thread``) starts with the first count; a forked child
(gunicorn and granian workers) starts afresh with empty buffers and its own thread, and the last
counts are flushed at exit.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from redis.exceptions import RedisError

from core.flush_thread import FlushThread
from core.redis_client import get_redis
from rollouts.exposures import (
    KEPT_SECONDS,
    bucket_counts_key,
    bucket_totals_key,
    exposures_key,
    minute_field,
    units_key,
)

FLUSH_SECONDS = 1.0
MAX_WAITING_UNITS = 200_000
Count = tuple[int, int, str, int]  # rollout id, threshold, arm, bucket
Arm = tuple[int, int, str]  # rollout id, threshold, arm

# KEYS: the bucket counts and their totals; ARGV: the TTL, then pairs of an arm and its counts as
# "bucket:count,bucket:count,…" (one argument per arm: a flush sends thousands of buckets). Each
# count's square grows by (2 * new - count) * count when it grows by count; an arm's totals are
# added once.
BUCKETS_SCRIPT = """
for i = 2, #ARGV, 2 do
  local arm, n, sq = ARGV[i], 0, 0
  for bucket, count in string.gmatch(ARGV[i + 1], '(%d+):(%d+)') do
    count = tonumber(count)
    local new = redis.call('HINCRBY', KEYS[1], arm .. ':' .. bucket, count)
    n = n + count
    sq = sq + (2 * new - count) * count
  end
  redis.call('HINCRBY', KEYS[2], arm .. ':n', n)
  redis.call('HINCRBY', KEYS[2], arm .. ':sq', string.format('%d', sq))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

logger = logging.getLogger(__name__)


class ExposureCounter:
    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # the parent's counts are the parent's to send
        self._flusher = FlushThread("exposures", self.flush, FLUSH_SECONDS)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Count, int] = {}
        self._units: dict[Arm, set[str]] = {}

    def count(self, rollout_id: int, threshold: int, arm: str, bucket: int, unit: str | None) -> None:
        """One exposure (the per-request work: no I/O)."""
        key = (rollout_id, threshold, arm, bucket)
        with self._lock:
            counts = self._counts
            counts[key] = counts.get(key, 0) + 1
            if unit:
                seen = self._units.get(key[:3])
                if seen is None:
                    self._units[key[:3]] = {unit}
                else:
                    seen.add(unit)
        if self._flusher.thread is None:
            self._flusher.start()

    def flush(self, now: float | None = None) -> None:
        """Send what was counted since the last flush to Redis, as exposures of the minute of
        ``now`` (default: the time now)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            units, self._units = self._units, {}
        if not counts:
            return
        minute = int((time.time() if now is None else now) // 60)
        client = get_redis()
        pipeline = client.pipeline(transaction=False)
        per_minute: dict[tuple[int, str], int] = {}
        per_arm: dict[tuple[int, int], dict[str, list[str]]] = {}
        for (rollout_id, threshold, arm, bucket), count in counts.items():
            per_minute[rollout_id, arm] = per_minute.get((rollout_id, arm), 0) + count
            per_arm.setdefault((rollout_id, threshold), {}).setdefault(arm, []).append(f"{bucket}:{count}")
        for (rollout_id, arm), count in per_minute.items():
            pipeline.hincrby(exposures_key(rollout_id), minute_field(arm, minute), count)
        for rollout_id in {rollout_id for rollout_id, _ in per_minute}:
            pipeline.expire(exposures_key(rollout_id), KEPT_SECONDS)
        script = client.register_script(BUCKETS_SCRIPT)
        for (rollout_id, threshold), arms in per_arm.items():
            keys = [bucket_counts_key(rollout_id, threshold), bucket_totals_key(rollout_id, threshold)]
            args: list[str | int] = [KEPT_SECONDS]
            for arm, bucket_counts in arms.items():
                args += (arm, ",".join(bucket_counts))
            script(keys=keys, args=args, client=pipeline)
        for (rollout_id, threshold, arm), seen in units.items():
            key = units_key(rollout_id, threshold, arm)
            pipeline.pfadd(key, *seen)
            pipeline.expire(key, KEPT_SECONDS)
        try:
            pipeline.execute()
        except RedisError as error:
            logger.warning("exposures: kept for the next flush (%s)", type(error).__name__)
            self._keep(counts, units)

    def _keep(self, counts: dict[Count, int], units: dict[Arm, set[str]]) -> None:
        with self._lock:
            for key, count in counts.items():
                self._counts[key] = self._counts.get(key, 0) + count
            room = MAX_WAITING_UNITS - sum(len(seen) for seen in self._units.values())
            for arm, seen in units.items():
                if room <= 0:
                    break
                kept = seen if len(seen) <= room else set(list(seen)[:room])
                self._units.setdefault(arm, set()).update(kept)
                room -= len(kept)


exposure_counter = ExposureCounter()
count_exposure = exposure_counter.count
