"""Every number a person reads about a rollout, as text: a metric's value with its unit, its
change between the arms, a gate's rule, a duration, a share of users.

Pure: no Django. The verdicts' details and reasons (`rollouts.engine`), the admin's pages and
charts all write numbers through here, so a figure reads the same wherever it appears. Negative
numbers take the typographic minus sign "−" (U+2212). The metrics are the gates'
(`rollouts.gate_metrics`) plus ``requests``, the traffic an arm received.
"""

from __future__ import annotations

import math
from decimal import Decimal

from rollouts.gate_metrics import QUANTILES, SCORE_PREFIX

REQUESTS = "requests"
TITLES = {
    REQUESTS: "requests per minute",
    "latency_p50_ms": "latency p50",
    "latency_p95_ms": "latency p95",
    "latency_p99_ms": "latency p99",
    "error_rate": "error rate",
    "cost_per_request": "cost per request",
    "traffic": "traffic (candidate share)",
}
NONE = "—"
MINUS = "−"
DAY_S = 86400


def _signed(text: str, negative: bool, *, plus: bool = False) -> str:
    if negative:
        return MINUS + text
    return "+" + text if plus else text


def count_text(count: int) -> str:
    """A count: ``1,240``."""
    return f"{count:,}"


def number_text(value: float, decimals: int) -> str:
    """A plain number: ``−3.0``, ``12.5``."""
    return _signed(f"{abs(value):,.{decimals}f}", value < 0)


def metric_title(metric: str) -> str:
    if metric.startswith(SCORE_PREFIX):
        name = metric.removeprefix(SCORE_PREFIX)
        return "every score" if name == "*" else f"score “{name}”"
    return TITLES.get(metric, metric)


def metric_text(metric: str, value: float | None) -> str:
    """A value with its unit: ``812 ms``, ``1.20%``, ``$0.0021``, ``0.812``, ``1,240``."""
    if value is None:
        return NONE
    size = abs(value)
    if metric == REQUESTS:
        text = f"{size:,.0f}"
    elif metric in QUANTILES:
        text = f"{size:,.0f} ms"
    elif metric in ("error_rate", "traffic"):
        text = f"{size:.2%}"
    elif metric == "cost_per_request":
        text = f"${size:.4f}"
    else:
        text = f"{size:.3f}"
    return _signed(text, value < 0)


def tick_text(metric: str, value: float, step: float) -> str:
    """An axis label: as many decimals as the tick step needs, with the unit."""
    if metric == "error_rate":
        return _signed(f"{abs(value) * 100:.{_decimals(step * 100)}f}%", value < 0)
    text = f"{abs(value):,.{_decimals(step)}f}"
    if metric in QUANTILES:
        text = f"{text} ms"
    elif metric == "cost_per_request":
        text = f"${text}"
    return _signed(text, value < 0)


def _decimals(step: float) -> int:
    if step <= 0 or step >= 1:
        return 0
    return min(6, max(0, -math.floor(math.log10(step) + 1e-9)))


def change_text(metric: str, delta: float) -> str:
    """A change of the metric: ``+1.00 pts`` for error rates, else the value with its unit
    (``−0.050``, ``+120 ms``)."""
    if metric == "error_rate":
        return _signed(f"{abs(delta) * 100:.2f} pts", delta < 0, plus=True)
    return _signed(metric_text(metric, abs(delta)), delta < 0, plus=True)


def ratio_change_text(ratio: float) -> str:
    """A relative change, from the ratio new / old: ``+5.0%``, ``−12.3%``."""
    change = ratio - 1
    return _signed(f"{abs(change):.1%}", change < 0, plus=True)


def verdict_change_text(metric: str, rule: str, baseline: float, candidate: float) -> str:
    """The candidate's change from the baseline as its gate's rule measures it: relative for a
    ``max_increase_pct`` rule (absolute when the baseline is 0), else absolute."""
    if rule == "max_increase_pct" and baseline:
        return ratio_change_text(candidate / baseline)
    return change_text(metric, candidate - baseline)


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
    if rule == "traffic":
        return f"share within ±{limit:.0%} of the step's; outcomes per exposure at most 20% below baseline"
    return f"{rule} {limit:g}"


def duration_text(seconds: float) -> str:
    """``45 s``, ``10 min``, ``4 min 10 s``, ``1 h 30 min``, ``24 h``, ``3 d 2 h``: the two largest
    units (days from 48 hours on), rounded up to the second."""
    total = max(0, math.ceil(seconds))
    days, rest = divmod(total, DAY_S) if total >= 2 * DAY_S else (0, total)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    used = [i for i, (amount, _) in enumerate(parts) if amount]
    if not used:
        return "0 s"
    first = used[0]
    return " ".join(f"{amount} {unit}" for amount, unit in parts[first : first + 2] if amount)


def percent_value(percent: Decimal | float) -> int | float:
    """A share of users as a JSON number or for text: ``10`` rather than ``10.00``, ``12.5``."""
    number = float(percent)
    return int(number) if number.is_integer() else number
