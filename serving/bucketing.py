"""Which arm of a rollout a unit gets (pure; must match the SDK bit for bit).

``bucket = murmur3_x86_32(f"{salt}:{unit}", seed=0) % 10000`` (unsigned), a basis point; a unit is
in the candidate arm iff its bucket is below the rollout's threshold, ``round(percent * 100)``.
Raising the percent therefore only adds units to the candidate arm.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, NamedTuple

import mmh3

BUCKETS = 10_000
Arm = Literal["baseline", "candidate"]


class Assignment(NamedTuple):
    """Immutable, and made for every resolve: a named tuple costs a third of a frozen dataclass."""

    arm: Arm
    bucket: int
    sticky: bool


def bucket_of(salt: str, unit: str) -> int:
    """The unit's bucket, 0…9999, in the rollout with this salt."""
    return mmh3.hash(f"{salt}:{unit}", 0, signed=False) % BUCKETS


def threshold_of(percent: Decimal | float | int) -> int:
    """Buckets below this number are in the candidate arm (percent 10 → 1000 buckets)."""
    return int(round(Decimal(str(percent)) * 100))


def default_salt(prompt_name: str, rollout_id: int) -> str:
    return f"{prompt_name}:{rollout_id}"


def assign(*, salt: str, threshold: int, unit: str | None, random_bucket: int) -> Assignment:
    """The arm of ``unit``; without a unit (None or ""), ``random_bucket`` decides and the answer
    is not sticky. The caller draws ``random_bucket`` (0…9999) so that this stays deterministic."""
    if unit:
        bucket, sticky = bucket_of(salt, unit), True
    else:
        bucket, sticky = random_bucket, False
    return Assignment("candidate" if bucket < threshold else "baseline", bucket, sticky)
