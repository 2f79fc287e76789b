"""Synthetic outcomes for `manage.py simulate` (pure: no Django, randomness passed in).

SPEC's reference traffic: 1% errors, lognormal latency (median 800 ms, sigma 0.5), scores normal
(mean 0.8, sd 0.15), each arm with figures of its own.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArmBehaviour:
    error_rate: float = 0.01
    latency_median_ms: float = 800.0
    latency_sigma: float = 0.5
    score_mean: float = 0.8
    score_sd: float = 0.15
    cost_usd: float = 0.002
    report_loss: float = 0.0  # the share of calls whose outcome is never reported (a crash, a lost event)

    def reports(self, rng: random.Random) -> bool:
        """Whether this call's outcome reaches promptramp."""
        return rng.random() >= self.report_loss


def outcome_event(
    *,
    rng: random.Random,
    behaviour: ArmBehaviour,
    resolved: dict[str, Any],
    ts: str,
    shadow_sample: bool = False,
) -> dict[str, Any]:
    """One outcome event, shaped like SPEC's example, for a request that `resolved` answered;
    ``shadow_sample``: a baseline answer that carried a shadow (its unit is in the sample)."""
    error = rng.random() < behaviour.error_rate
    latency = rng.lognormvariate(math.log(behaviour.latency_median_ms), behaviour.latency_sigma)
    score = min(1.0, max(0.0, rng.gauss(behaviour.score_mean, behaviour.score_sd)))
    input_tokens = rng.randint(200, 500)
    output_tokens = rng.randint(50, 200)
    event = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "prompt": resolved["name"],
        "version": resolved["version"],
        "rollout_id": resolved["rollout_id"],
        "arm": resolved["arm"],
        "latency_ms": round(latency, 2),
        "error": error,
        "error_type": "ProviderError" if error else None,
        "cost_usd": round(behaviour.cost_usd * rng.uniform(0.8, 1.2), 6),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "scores": {} if error else {"helpfulness": round(score, 4)},
        "ts": ts,
    }
    if shadow_sample:
        event["shadow_sample"] = True
    return event


def shadow_run(resolved: dict[str, Any]) -> dict[str, Any]:
    """What a shadow run is reported as: the answer's ``shadow`` (the candidate), arm ``shadow``."""
    return {
        "name": resolved["name"],
        "version": resolved["shadow"]["version"],
        "rollout_id": resolved["rollout_id"],
        "arm": "shadow",
    }


def late_score(*, rng: random.Random, event: dict[str, Any]) -> dict[str, Any] | None:
    """Take the scores out of a call's ``event`` (left with none) into a late score of that
    call, as an LLM judge would send them after the call; None when the call carries none."""
    scores = event["scores"]
    event["scores"] = {}
    if not scores:
        return None
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "of_event": event["event_id"],
        "scores": scores,
    }
