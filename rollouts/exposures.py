"""Where a rollout's exposures are kept in Redis: how often each arm was served, written by the
serving processes (``serving.exposures``, their resolves and renders) and by ingest (the SDKs'
counts of their local resolutions, ``outcomes.exposures``), read by the ingest gate source for
the traffic check (``rollouts.engine``).

* ``exposures_key(rollout)``: a hash of ``"{arm}:{unix minute}"`` to the number of exposures.
* ``units_key(rollout, threshold, arm)``: a HyperLogLog of the units the servers served that arm
  at that split (``threshold`` = percent x 100): distinct units are counted, no id is kept.
* ``bucket_counts_key(rollout, threshold)``: a hash of ``"{arm}:{bucket}"`` to the servers'
  exposures of that bucket, and ``bucket_totals_key(rollout, threshold)``: ``"{arm}:n"`` and
  ``"{arm}:sq"``, the sum of those counts and of their squares (`stats.ArmExposures`), kept up
  to date as the counts grow so a reader needs one small hash.

Every key expires `KEPT_SECONDS` after its last write, longer than a step may run by default
(24 h) with room for a paused one; a step whose split changes starts new unit and bucket keys.
"""

from __future__ import annotations

KEPT_SECONDS = 8 * 24 * 3600
PREFIX = "promptramp:exposures"


def exposures_key(rollout_id: int) -> str:
    return f"{PREFIX}:{rollout_id}"


def units_key(rollout_id: int, threshold: int, arm: str) -> str:
    return f"{PREFIX}:{rollout_id}:units:{threshold}:{arm}"


def bucket_counts_key(rollout_id: int, threshold: int) -> str:
    return f"{PREFIX}:{rollout_id}:buckets:{threshold}"


def bucket_totals_key(rollout_id: int, threshold: int) -> str:
    return f"{PREFIX}:{rollout_id}:bucket-totals:{threshold}"


def minute_field(arm: str, minute: int) -> str:
    return f"{arm}:{minute}"
