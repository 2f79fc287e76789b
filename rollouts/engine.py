"""The rollout controller's decision engine: `decide`.

Pure: no Django, no clock, no I/O. `decide` takes the plan and the gates (`rollouts.plan`), the
current step and when it started, the time now and each source's per-arm statistics for the
step's window, and returns a `Decision` (hold, advance, pause, rollback or succeed) with a reason naming the
gates and their numbers, and every gate's `Verdict`. The statistics are in `rollouts.stats`.

A rollout's false-rollback budget `ROLLOUT_ALPHA` is split evenly over its steps and gate
checks: each check fails with probability at most ROLLOUT_ALPHA / (steps * checks) when the
candidate equals the baseline, however often it is evaluated. A regression as large as a gate's
limit passes that gate with probability at most `BETA` at each step.

A relative gate spends half of its check's budget on Wald's test between "no regression" and "a
regression of the limit's size" (the quickest to tell those two apart) and half on a confidence
sequence on the effect, which fails the gate once the whole sequence lies beyond the limit: a
regression many times the limit fails after a few dozen samples instead of hundreds. An absolute
gate fails on a confidence sequence whose mixture is as wide as the limit and passes on one a
tenth as wide (each side is a separate always-valid statement at its own level).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rollouts import stats
from rollouts.figures import (
    change_text,
    metric_text,
    number_text,
    ratio_change_text,
    rule_text,
    verdict_change_text,
)
from rollouts.gate_metrics import ALL_SCORES, QUANTILES, SCORE_PREFIX, metric_value
from rollouts.plan import Gate, Plan, Step
from rollouts.stats import ArmStats, Estimate

ROLLOUT_ALPHA = 0.005
BETA = 0.05
# Mixture scales of the confidence sequences, in units of the gate's limit (`stats.mixture_halfwidth`):
# wide to fail quickly on effects far beyond the limit, narrow to pass close below it.
FAIL_SCALE = 10.0
ABSOLUTE_FAIL_SCALE = 1.0
ABSOLUTE_PASS_SCALE = 0.1

PASS = "pass"
FAIL = "fail"
INSUFFICIENT = "insufficient_data"


# --- verdicts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceWindow:
    """One source's per-arm statistics for the current step's window, or why it has none.

    At the 100% step the baseline is empty (`ArmStats()`).
    """

    baseline: ArmStats
    candidate: ArmStats
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    metric: str
    verdict: str
    baseline: float | None
    candidate: float | None
    detail: str
    source: str
    rule: str
    limit: float
    on_fail: str

    def to_json(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "verdict": self.verdict,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "detail": self.detail,
            "source": self.source,
            "rule": self.rule,
            "limit": self.limit,
            "on_fail": self.on_fail,
        }


def _observations(metric: str, arm: ArmStats) -> int:
    if metric in QUANTILES:
        return arm.histogram.count
    if metric == "error_rate":
        return arm.samples
    if metric == "cost_per_request":
        return arm.cost.count
    return arm.score(metric.removeprefix(SCORE_PREFIX)).count


def _relative_effect(metric: str, gate: Gate, base: ArmStats, cand: ArmStats) -> tuple[Estimate, float] | str:
    """The estimated regression (positive = worse) and the regression the limit allows,
    in the same units; or why there is none."""
    direction = -1.0 if gate.rule == "max_drop_abs" else 1.0
    if metric in QUANTILES:
        q = QUANTILES[metric]
        pooled = stats.histogram_merge(base.histogram, cand.histogram)
        sparsity = stats.log_quantile_sparsity(pooled, q)
        var_b = stats.log_quantile_variance(base.histogram.count, q, sparsity)
        var_c = stats.log_quantile_variance(cand.histogram.count, q, sparsity)
        q_b, q_c = base.latency_quantile(q) or 0.0, cand.latency_quantile(q) or 0.0
        if gate.rule == "max_increase_pct":
            if q_b == 0 or q_c == 0:
                return "a latency quantile is 0 ms, so a percent change is undefined"
            effect = Estimate(math.log(q_c / q_b), math.sqrt(var_b + var_c))
            return effect, math.log1p(gate.limit / 100)
        se = math.sqrt(q_b**2 * var_b + q_c**2 * var_c)
        return Estimate(direction * (q_c - q_b), se), gate.limit
    if metric == "error_rate":
        x_b, n_b, x_c, n_c = base.errors, base.samples, cand.errors, cand.samples
        smoothed_b = (x_b + 0.5) / (n_b + 1)
        regression = gate.limit if gate.rule != "max_increase_pct" else smoothed_b * gate.limit / 100
        p_alt = min(1.0, max(0.0, smoothed_b + direction * regression))
        var_c = max(stats.proportion_variance(x_c, n_c), p_alt * (1 - p_alt))
        se = math.sqrt(stats.proportion_variance(x_b, n_b) / n_b + var_c / n_c)
        return Estimate(direction * (x_c / n_c - x_b / n_b), se), regression
    if metric == "cost_per_request":
        moments_b, moments_c = base.cost, cand.cost
    else:
        name = metric.removeprefix(SCORE_PREFIX)
        moments_b, moments_c = base.score(name), cand.score(name)
    m_b, m_c = stats.mean_estimate(moments_b), stats.mean_estimate(moments_c)
    regression = gate.limit
    if gate.rule == "max_increase_pct":
        if m_b.value <= 0:
            return "the baseline mean is not positive, so a percent change is undefined"
        regression = m_b.value * gate.limit / 100
    se = math.hypot(m_b.standard_error, m_c.standard_error)
    return Estimate(direction * (m_c.value - m_b.value), se), regression


def _absolute_estimate(metric: str, gate: Gate, cand: ArmStats) -> Estimate:
    if metric in QUANTILES:
        q = QUANTILES[metric]
        sparsity = stats.log_quantile_sparsity(cand.histogram, q)
        return stats.quantile_estimate(cand.histogram, q, sparsity)
    if metric == "error_rate":
        at_limit = min(1.0, max(0.0, gate.limit))
        variance = max(stats.proportion_variance(cand.errors, cand.samples), at_limit * (1 - at_limit))
        return Estimate(cand.errors / cand.samples, math.sqrt(variance / cand.samples))
    if metric == "cost_per_request":
        return stats.mean_estimate(cand.cost)
    return stats.mean_estimate(cand.score(metric.removeprefix(SCORE_PREFIX)))


def _evaluate(gate: Gate, metric: str, window: SourceWindow | None, step: Step, alpha: float) -> Verdict:
    def verdict(result: str, detail: str, b: float | None, c: float | None) -> Verdict:
        return Verdict(metric, result, b, c, detail, gate.source, gate.rule, gate.limit, gate.on_fail)

    if window is None:
        return verdict(INSUFFICIENT, f"no data from source {gate.source}", None, None)
    if window.error is not None:
        cause = f"source {gate.source} unavailable: {window.error}"
        return verdict(INSUFFICIENT, cause, None, None)
    base, cand = window.baseline, window.candidate
    b_value, c_value = metric_value(metric, base), metric_value(metric, cand)
    needed = max(
        step.min_samples if gate.min_samples is None else gate.min_samples,
        stats.quantile_observations_needed(QUANTILES[metric])
        if metric in QUANTILES
        else stats.MIN_OBSERVATIONS,
    )
    n_b, n_c = _observations(metric, base), _observations(metric, cand)
    if gate.relative:
        counts = f"n {n_c:,} candidate / {n_b:,} baseline"
        if min(n_c, n_b) < needed or b_value is None or c_value is None:
            detail = f"needs {needed:,} observations per arm ({counts})"
            return verdict(INSUFFICIENT, detail, b_value, c_value)
        result, detail = _relative_verdict(gate, metric, base, cand, alpha, counts)
    else:
        counts = f"n {n_c:,}"
        if n_c < needed or c_value is None:
            detail = f"needs {needed:,} observations ({counts})"
            return verdict(INSUFFICIENT, detail, b_value, c_value)
        result, detail = _absolute_verdict(gate, metric, cand, alpha, counts)
    return verdict(result, detail, b_value, c_value)


def _relative_verdict(
    gate: Gate, metric: str, base: ArmStats, cand: ArmStats, alpha: float, counts: str
) -> tuple[str, str]:
    """The sequential probability ratio test's verdict and its explanation."""
    b_value, c_value = metric_value(metric, base) or 0.0, metric_value(metric, cand) or 0.0
    figures = (
        f"candidate {metric_text(metric, c_value)} vs baseline {metric_text(metric, b_value)} "
        f"({verdict_change_text(metric, gate.rule, b_value, c_value)}; "
        f"allowed: {rule_text(metric, gate.rule, gate.limit)}; {counts})"
    )
    evidence = _relative_effect(metric, gate, base, cand)
    if isinstance(evidence, str):
        return INSUFFICIENT, f"{figures}: {evidence}"
    effect, regression = evidence
    llr = stats.sprt_log_likelihood_ratio(effect, regression)
    fail_at, pass_at = math.log(2 / alpha), math.log(BETA)
    llr_text, fail_text, pass_text = (number_text(x, 1) for x in (llr, fail_at, pass_at))
    if llr >= fail_at:
        return FAIL, f"{figures}: a regression (LLR {llr_text} >= {fail_text})"
    least = effect.value - stats.mixture_halfwidth(effect.standard_error, alpha / 2, FAIL_SCALE * regression)
    if least > regression:
        return (
            FAIL,
            f"{figures}: a regression beyond the limit (at least {_effect_text(metric, gate, least)})",
        )
    if llr <= pass_at:
        return PASS, f"{figures}: within the limit (LLR {llr_text} <= {pass_text})"
    return (
        INSUFFICIENT,
        f"{figures}: not yet conclusive (LLR {llr_text}; fail >= {fail_text}, pass <= {pass_text})",
    )


def _effect_text(metric: str, gate: Gate, effect: float) -> str:
    """An effect as `_relative_effect` measures it (positive = worse), in the metric's terms."""
    if metric in QUANTILES and gate.rule == "max_increase_pct":
        return ratio_change_text(math.exp(effect))  # the effect is a log ratio of the quantiles
    return change_text(metric, -effect if gate.rule == "max_drop_abs" else effect)


def _absolute_verdict(gate: Gate, metric: str, cand: ArmStats, alpha: float, counts: str) -> tuple[str, str]:
    """The confidence sequence's verdict and its explanation."""
    estimate = _absolute_estimate(metric, gate, cand)
    se, size = estimate.standard_error, abs(gate.limit)
    sign = 1.0 if gate.rule == "max" else -1.0
    best = estimate.value - sign * stats.mixture_halfwidth(se, alpha, ABSOLUTE_FAIL_SCALE * size or se)
    worst = estimate.value + sign * stats.mixture_halfwidth(se, BETA, ABSOLUTE_PASS_SCALE * size or se)
    allowed = rule_text(metric, gate.rule, gate.limit)
    figures = f"candidate {metric_text(metric, estimate.value)} (allowed: {allowed}; {counts})"
    if sign * (best - gate.limit) > 0:
        return FAIL, f"{figures}: beyond the limit (bound {metric_text(metric, best)})"
    if sign * (worst - gate.limit) <= 0:
        return PASS, f"{figures}: within the limit (bound {metric_text(metric, worst)})"
    bounds = f"{metric_text(metric, min(best, worst))} .. {metric_text(metric, max(best, worst))}"
    return INSUFFICIENT, f"{figures}: not yet conclusive (bounds {bounds})"


def _checks(gates: Sequence[Gate], windows: Mapping[str, SourceWindow]) -> list[tuple[Gate, str]]:
    """Each gate with the metric it checks; ``score:*`` becomes one check per score reported."""
    checks = []
    for gate in gates:
        window = windows.get(gate.source)
        if gate.metric != ALL_SCORES or window is None or window.error is not None:
            checks.append((gate, gate.metric))
            continue
        names = {name for name, _ in window.baseline.scores + window.candidate.scores}
        checks.extend((gate, SCORE_PREFIX + name) for name in sorted(names))
    return checks


# --- decisions -----------------------------------------------------------------------------


class Action(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    PAUSE = "pause"
    ROLLBACK = "rollback"
    SUCCEED = "succeed"


@dataclass(frozen=True)
class Decision:
    """What to do now. ``step_index`` and ``percent`` are those after the decision: the next
    step's on advance, 100 on succeed, 0 (all traffic to the baseline) on rollback."""

    action: Action
    step_index: int
    percent: int
    reason: str
    verdicts: tuple[Verdict, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "action": str(self.action),
            "step_index": self.step_index,
            "percent": self.percent,
            "reason": self.reason,
            "verdicts": [v.to_json() for v in self.verdicts],
        }


def decide(
    *,
    plan: Plan,
    step_index: int,
    step_started_at: datetime,
    now: datetime,
    windows: Mapping[str, SourceWindow],
    gates: Sequence[Gate],
    promote: bool = False,
) -> Decision:
    """Decide a running rollout's next move from its current step's window.

    ``windows`` maps each gate source ("ingest", "langfuse", "prometheus") to its per-arm
    statistics since the step started; a gate whose source is missing or failed is
    ``insufficient_data``. ``promote`` is an explicit promote request: it advances past manual
    approval, the wait, ``min_samples`` and ``insufficient_data`` but never past a failing gate
    (the decision is then the failing gate's rollback or pause).
    """
    if not 0 <= step_index < len(plan.steps):
        raise ValueError(f"step_index {step_index} is outside the plan's {len(plan.steps)} steps")
    step = plan.steps[step_index]
    has_baseline = step.percent < 100
    checks = _checks(gates, windows)
    alpha = ROLLOUT_ALPHA / (len(plan.steps) * max(1, len(checks)))
    verdicts = tuple(
        _evaluate(gate, metric, windows.get(gate.source), step, alpha)
        for gate, metric in checks
        if has_baseline or not gate.relative
    )

    def decision(action: Action, reason: str, percent: int = step.percent) -> Decision:
        return Decision(action, step_index, percent, reason, verdicts)

    failing = [v for v in verdicts if v.verdict == FAIL]
    if failing:
        failures = "; ".join(f"{v.metric} failed: {v.detail}" for v in failing)
        if any(v.on_fail == "rollback" for v in failing):
            return decision(Action.ROLLBACK, f"rolled back at {step.percent}%: {failures}", 0)
        return decision(Action.PAUSE, f"paused at {step.percent}%: {failures}")

    elapsed = (now - step_started_at).total_seconds()
    open_gates = [v for v in verdicts if v.verdict != PASS] if has_baseline else []
    short = _samples_short(step, windows) if has_baseline else []
    waiting = (
        ([f"{elapsed:,.0f} s of {step.min_duration_s:,} s"] if elapsed < step.min_duration_s else [])
        + short
        + [f"{v.metric} {v.verdict} ({v.detail})" for v in open_gates]
        + (["manual approval"] if step.approval == "manual" else [])
    )
    if promote or not waiting:
        why = f"promoted past {'; '.join(waiting)}" if waiting else "every gate passed"
        why += f" after {elapsed:,.0f} s"
        if step_index == len(plan.steps) - 1:
            return decision(Action.SUCCEED, f"succeeded at {step.percent}%: {why}")
        following = plan.steps[step_index + 1]
        reason = f"advanced from {step.percent}% to {following.percent}%: {why}"
        return Decision(Action.ADVANCE, step_index + 1, following.percent, reason, verdicts)
    if (open_gates or short) and elapsed >= step.max_duration_s:
        still = [f"{v.metric} ({v.detail})" for v in open_gates if v.verdict == INSUFFICIENT]
        return decision(
            Action.PAUSE,
            f"paused at {step.percent}%: the step ran {elapsed:,.0f} s (max "
            f"{step.max_duration_s:,} s) without every gate passing; still insufficient_data: "
            + "; ".join(still + short),
        )
    return decision(Action.HOLD, f"holding at {step.percent}%: waiting for {'; '.join(waiting)}")


def _samples_short(step: Step, windows: Mapping[str, SourceWindow]) -> list[str]:
    """The arms below the step's ``min_samples`` (requests seen by any source that answered)."""
    answered = [w for w in windows.values() if w.error is None]
    counts = {
        "baseline": max((w.baseline.samples for w in answered), default=0),
        "candidate": max((w.candidate.samples for w in answered), default=0),
    }
    return [
        f"{arm} {count:,} of {step.min_samples:,} samples"
        for arm, count in counts.items()
        if count < step.min_samples
    ]
