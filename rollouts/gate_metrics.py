"""The metrics a gate judges, and each one's value over an arm's outcomes.

Pure: no Django. A metric is one of `METRICS` or ``score:<name>``, the mean of an evaluation
score; a gate on ``score:*`` judges every score both arms reported. Units: milliseconds for
latency, fractions (0–1) for error rates and scores, US dollars for cost.
"""

from __future__ import annotations

from rollouts.stats import ArmStats

QUANTILES = {"latency_p50_ms": 0.50, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
METRICS = (*QUANTILES, "error_rate", "cost_per_request")
SCORE_PREFIX = "score:"
ALL_SCORES = "score:*"


def metric_value(metric: str, arm: ArmStats) -> float | None:
    """The metric over an arm's outcomes; None without data."""
    if metric in QUANTILES:
        return arm.latency_quantile(QUANTILES[metric])
    if metric == "error_rate":
        return arm.error_rate
    if metric == "cost_per_request":
        return arm.cost_per_request
    return arm.score(metric.removeprefix(SCORE_PREFIX)).mean
