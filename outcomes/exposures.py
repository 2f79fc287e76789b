"""Exposures through ingest: the counts SDKs report of their local resolutions (with a batch of
events, ``POST /api/v1/events``), and the reading of a step's exposures for the traffic check
(`outcomes.ingest_source`). The keys are ``rollouts.exposures``'; the serving processes write
their own counts there (``serving.exposures``).

A batch's exposures are added by one Lua call that first remembers its ``batch_id`` for
`BATCHES_REMEMBERED_SECONDS` (as long as an event id): a batch sent again is not counted again.
"""

from __future__ import annotations

from datetime import datetime

from core.redis_client import get_redis
from outcomes.validation import SHADOW, ReportedExposure
from rollouts.exposures import (
    KEPT_SECONDS,
    PREFIX,
    bucket_totals_key,
    exposures_key,
    minute_field,
    units_key,
)
from rollouts.stats import ArmExposures, Exposures

BATCHES_REMEMBERED_SECONDS = 24 * 3600

# KEYS[1]: the batch's memory. ARGV: its TTL, the counts' TTL, then (key, field, count) triples.
ADD_SCRIPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
for i = 3, #ARGV, 3 do
  redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2])
  redis.call('EXPIRE', ARGV[i], ARGV[2])
end
return 1
"""


def sdk_exposures_add(*, batch_id: bytes, exposures: list[ReportedExposure]) -> bool:
    """Count a batch's exposures unless its ``batch_id`` was counted before; whether counted."""
    totals: dict[tuple[int, str], int] = {}
    for row in exposures:
        field = minute_field(row.arm, row.minute)
        totals[row.rollout_id, field] = totals.get((row.rollout_id, field), 0) + row.count
    args: list[str | int] = [BATCHES_REMEMBERED_SECONDS, KEPT_SECONDS]
    for (rollout_id, field), count in totals.items():
        args.extend((exposures_key(rollout_id), field, count))
    client = get_redis()
    added = client.register_script(ADD_SCRIPT)(keys=[f"{PREFIX}:batch:{batch_id.hex()}"], args=args)
    return bool(added)


def exposures_read(
    *, rollout_id: int, threshold: int, since: datetime, until: datetime, shadow: bool = False
) -> Exposures | None:
    """Both arms' exposures in the minutes overlapping ``[since, until)``, with the distinct units
    and per-bucket figures of the split ``threshold``; None when there are no counts at all.
    ``shadow`` (a shadow step): the shadow runs' exposures in the candidate's place."""
    arms_read = ("baseline", SHADOW if shadow else "candidate")
    pipeline = get_redis().pipeline(transaction=False)
    pipeline.hgetall(exposures_key(rollout_id))
    pipeline.hgetall(bucket_totals_key(rollout_id, threshold))
    for arm in arms_read:
        pipeline.pfcount(units_key(rollout_id, threshold, arm))
    minutes, totals, *units = pipeline.execute()
    first, last = int(since.timestamp() // 60), int(-(-until.timestamp() // 60))
    counts = dict.fromkeys(arms_read, 0)
    for field, count in minutes.items():
        arm, _, minute = field.decode().rpartition(":")
        if arm in counts and first <= int(minute) < last:
            counts[arm] += int(count)
    if not any(counts.values()):
        return None
    figures = {field.decode(): int(value) for field, value in totals.items()}
    arms = [
        ArmExposures(
            count=counts[arm],
            units=int(seen),
            bucket_total=figures.get(f"{arm}:n", 0),
            bucket_total_sq=figures.get(f"{arm}:sq", 0),
        )
        for arm, seen in zip(arms_read, units, strict=True)
    ]
    return Exposures(baseline=arms[0], candidate=arms[1])
