"""How the admin's rollout pages show gate metrics: a metric's value from an arm's statistics, its
name in words, its numbers with their unit, a gate's rule and a duration.

Pure: no Django. The metrics are the engine's (`rollouts.engine.METRICS`, ``score:<name>``) plus
``requests``, the traffic an arm received.
"""

from __future__ import annotations

import math

from rollouts.gate_metrics import QUANTILES, SCORE_PREFIX
from rollouts.stats import ArmStats

REQUESTS = "requests"
TITLES = {
    REQUESTS: "requests per minute",
    "latency_p50_ms": "latency p50",
    "latency_p95_ms": "latency p95",
    "latency_p99_ms": "latency p99",
    "error_rate": "error rate",
    "cost_per_request": "cost per request",
}
NONE = "—"


def metric_value(metric: str, arm: ArmStats) -> float | None:
    """The metric over an arm's outcomes (requests: their count); None without data."""
    if metric == REQUESTS:
        return float(arm.samples)
    if metric in QUANTILES:
        return arm.latency_quantile(QUANTILES[metric])
    if metric == "error_rate":
        return arm.error_rate
    if metric == "cost_per_request":
        return arm.cost_per_request
    return arm.score(metric.removeprefix(SCORE_PREFIX)).mean


def metric_title(metric: str) -> str:
    if metric.startswith(SCORE_PREFIX):
        name = metric.removeprefix(SCORE_PREFIX)
        return "every score" if name == "*" else f"score “{name}”"
    return TITLES.get(metric, metric)


def metric_text(metric: str, value: float | None) -> str:
    """A value with its unit: ``812 ms``, ``1.20%``, ``$0.0021``, ``0.812``, ``1,240``."""
    if value is None:
        return NONE
    if metric == REQUESTS:
        return f"{value:,.0f}"
    if metric in QUANTILES:
        return f"{value:,.0f} ms"
    if metric == "error_rate":
        return f"{value:.2%}"
    if metric == "cost_per_request":
        return f"${value:.4f}"
    return f"{value:.3f}"


def tick_text(metric: str, value: float, step: float) -> str:
    """An axis label: as many decimals as the tick step needs, with the unit."""
    if metric == "error_rate":
        return f"{value * 100:.{_decimals(step * 100)}f}%"
    text = f"{value:,.{_decimals(step)}f}"
    if metric in QUANTILES:
        return f"{text} ms"
    if metric == "cost_per_request":
        return f"${text}"
    return text


def _decimals(step: float) -> int:
    if step <= 0 or step >= 1:
        return 0
    return min(6, max(0, -math.floor(math.log10(step) + 1e-9)))


def change_text(metric: str, delta: float) -> str:
    """A change of the metric: ``+1.00 pts`` for error rates, else the value with its unit."""
    sign = "+" if delta >= 0 else "−"
    if metric == "error_rate":
        return f"{sign}{abs(delta) * 100:.2f} pts"
    return sign + metric_text(metric, abs(delta))


def rule_text(metric: str, rule: str, limit: float) -> str:
    """A gate's rule in words, e.g. ``at most +20% vs baseline`` or ``at most $0.0500``."""
    if rule == "max":
        return f"at most {metric_text(metric, limit)}"
    if rule == "min":
        return f"at least {metric_text(metric, limit)}"
    if rule == "max_increase_pct":
        return f"at most +{limit:g}% vs baseline"
    if rule == "max_increase_abs":
        return f"at most {change_text(metric, limit)} vs baseline"
    if rule == "max_drop_abs":
        return f"at most {change_text(metric, -limit)} vs baseline"
    return f"{rule} {limit:g}"


def duration_text(seconds: float) -> str:
    """``45 s``, ``10 min``, ``4 min 10 s``, ``1 h 30 min``, ``24 h``, ``3 d 2 h``: the two largest
    units (days from 48 hours on)."""
    total = max(0, math.ceil(seconds))
    days, rest = divmod(total, 86400) if total >= 2 * 86400 else (0, total)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    used = [i for i, (amount, _) in enumerate(parts) if amount]
    if not used:
        return "0 s"
    first = used[0]
    return " ".join(f"{amount} {unit}" for amount, unit in parts[first : first + 2] if amount)
