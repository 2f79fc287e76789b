"""Deterministic bucketing of units into a rollout's arms (must match the server bit for bit)."""

import mmh3

BUCKETS = 10_000


def bucket_of(salt: str, unit: str) -> int:
    """The unit's bucket, 0…9999 (basis points), for a rollout with this salt."""
    return mmh3.hash(f"{salt}:{unit}", 0, False) % BUCKETS


def threshold_of(percent: float) -> int:
    """Buckets below this number are in the candidate arm."""
    return round(percent * 100)
