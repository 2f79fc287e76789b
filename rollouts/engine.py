"""The rollout controller's decision engine: `decide`.

Pure: no Django, no clock, no I/O. `decide` takes the plan and the gates (`rollouts.plan`), the
current step and when it started, the time now and each source's per-arm statistics for the
step's window, and returns a `Decision` (hold, advance, pause, rollback or succeed) with a reason
naming the gates and their numbers, every gate's `Verdict`, and the `StepConditions` it checked
(time on the step, samples per arm, the gates, approval): what the API and the admin show of a
step, so nothing else works these rules out again. The statistics are in `rollouts.stats`, the
wording of numbers in `rollouts.figures`.

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
from typing import Any

from rollouts import stats
from rollouts.figures import (
    change_text,
    count_text,
    duration_text,
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

    At the 100% step the baseline is empty (`ArmStats()`). In a shadow step ``candidate`` is the
    shadow runs and ``baseline`` the baseline outcomes of the same units (the shadow sample).
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

    if gate.refused is not None:
        return verdict(INSUFFICIENT, gate.refused, None, None)
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
        counts = f"n {count_text(n_c)} candidate / {count_text(n_b)} baseline"
        if min(n_c, n_b) < needed or b_value is None or c_value is None:
            detail = f"needs {count_text(needed)} observations per arm ({counts})"
            return verdict(INSUFFICIENT, detail, b_value, c_value)
        result, detail = _relative_verdict(gate, metric, base, cand, alpha, counts)
    else:
        counts = f"n {count_text(n_c)}"
        if n_c < needed or c_value is None:
            detail = f"needs {count_text(needed)} observations ({counts})"
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
    """Each gate with the metric it checks; ``score:*`` becomes one check per score both arms
    reported (a name only one arm has cannot be compared, and would hold every step)."""
    checks = []
    for gate in gates:
        window = windows.get(gate.reads_from)
        if (
            gate.metric != ALL_SCORES
            or gate.refused is not None
            or window is None
            or window.error is not None
        ):
            checks.append((gate, gate.metric))
            continue
        names = {name for name, _ in window.baseline.scores} & {name for name, _ in window.candidate.scores}
        checks.extend((gate, SCORE_PREFIX + name) for name in sorted(names))
    return checks


# --- conditions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeOnStep:
    """How long the step has run (since it began, or was resumed) against its minimum, and its
    maximum: a step whose gates or samples are still wanted then pauses."""

    elapsed_s: float
    min_duration_s: int
    max_duration_s: int

    @property
    def met(self) -> bool:
        return self.elapsed_s >= self.min_duration_s

    @property
    def past_max(self) -> bool:
        return self.elapsed_s >= self.max_duration_s


@dataclass(frozen=True)
class SamplesPerArm:
    """Requests each arm received in the step's window — the most that any source that answered
    counted — against the step's ``min_samples``."""

    baseline: int
    candidate: int
    min_samples: int

    @property
    def short(self) -> dict[str, int]:
        """The arms below ``min_samples``, with their counts."""
        counts = {"baseline": self.baseline, "candidate": self.candidate}
        return {arm: count for arm, count in counts.items() if count < self.min_samples}

    @property
    def met(self) -> bool:
        return not self.short


@dataclass(frozen=True)
class GatesPassing:
    """The gates' verdicts as the step needs them: ``checked`` verdicts, the metrics ``failing``
    and those ``waiting`` (insufficient_data, which holds a step below 100% only)."""

    checked: int
    failing: tuple[str, ...]
    waiting: tuple[str, ...]

    @property
    def met(self) -> bool:
        return not self.failing and not self.waiting


@dataclass(frozen=True)
class Approval:
    manual: bool
    """``approval: manual``: only a promote advances the step."""

    @property
    def met(self) -> bool:
        return not self.manual


@dataclass(frozen=True)
class StepConditions:
    """What an advance of the current step needs, as `decide` found it."""

    time: TimeOnStep
    samples: SamplesPerArm | None
    """None at the 100% step: it has no baseline arm, and needs no samples."""
    gates: GatesPassing
    approval: Approval

    @property
    def met(self) -> bool:
        samples_met = self.samples is None or self.samples.met
        return self.time.met and samples_met and self.gates.met and self.approval.met

    @property
    def pauses_at_max_duration(self) -> bool:
        """Whether the step pauses once its ``max_duration_s`` has passed: some gate has not
        passed, or an arm lacks samples."""
        return bool(self.gates.waiting) or (self.samples is not None and not self.samples.met)

    def to_json(self) -> list[dict[str, object]]:
        time, gates = self.time, self.gates
        items: list[dict[str, object]] = [
            {
                "name": "time",
                "met": time.met,
                "elapsed_s": time.elapsed_s,
                "min_duration_s": time.min_duration_s,
                "max_duration_s": time.max_duration_s,
            }
        ]
        if self.samples is not None:
            samples = self.samples
            items.append(
                {
                    "name": "samples",
                    "met": samples.met,
                    "baseline": samples.baseline,
                    "candidate": samples.candidate,
                    "min_samples": samples.min_samples,
                }
            )
        items.append(
            {
                "name": "gates",
                "met": gates.met,
                "checked": gates.checked,
                "failing": list(gates.failing),
                "waiting": list(gates.waiting),
            }
        )
        items.append({"name": "approval", "met": self.approval.met, "manual": self.approval.manual})
        return items

    @classmethod
    def from_json(cls, items: Sequence[Mapping[str, Any]]) -> StepConditions:
        """Read what `to_json` wrote."""
        named = {item["name"]: item for item in items}
        time, gates = named["time"], named["gates"]
        samples = named.get("samples")
        return cls(
            time=TimeOnStep(time["elapsed_s"], time["min_duration_s"], time["max_duration_s"]),
            samples=None
            if samples is None
            else SamplesPerArm(samples["baseline"], samples["candidate"], samples["min_samples"]),
            gates=GatesPassing(gates["checked"], tuple(gates["failing"]), tuple(gates["waiting"])),
            approval=Approval(named["approval"]["manual"]),
        )


def _samples_per_arm(step: Step, windows: Mapping[str, SourceWindow]) -> SamplesPerArm:
    answered = [w for w in windows.values() if w.error is None]
    return SamplesPerArm(
        baseline=max((w.baseline.samples for w in answered), default=0),
        candidate=max((w.candidate.samples for w in answered), default=0),
        min_samples=step.min_samples,
    )


# --- decisions -----------------------------------------------------------------------------


class Action(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    PAUSE = "pause"
    ROLLBACK = "rollback"
    SUCCEED = "succeed"


@dataclass(frozen=True)
class Decision:
    """What to do now, why, and what was checked. ``step_index`` and ``percent`` are those after
    the decision: the next step's on advance (0 for a shadow step: nobody is served the
    candidate), 100 on succeed, 0 (all traffic to the baseline) on rollback; ``verdicts`` and
    ``conditions`` are of the step that was decided on."""

    action: Action
    step_index: int
    percent: int
    reason: str
    verdicts: tuple[Verdict, ...]
    conditions: StepConditions

    def to_json(self) -> dict[str, object]:
        return {
            "action": str(self.action),
            "step_index": self.step_index,
            "percent": self.percent,
            "reason": self.reason,
            "verdicts": [v.to_json() for v in self.verdicts],
            "conditions": self.conditions.to_json(),
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

    ``windows`` maps where gates read (`Gate.reads_from`: "ingest", "langfuse", "prometheus", or
    "prometheus:<server>" for a named server) to its per-arm
    statistics since the step started; a gate whose source is missing or failed is
    ``insufficient_data``. ``promote`` is an explicit promote request: it advances past manual
    approval, the wait, ``min_samples`` and ``insufficient_data`` but never past a failing gate
    (the decision is then the failing gate's rollback or pause).
    """
    if not 0 <= step_index < len(plan.steps):
        raise ValueError(f"step_index {step_index} is outside the plan's {len(plan.steps)} steps")
    step = plan.steps[step_index]
    has_baseline = step.shadow or step.percent < 100
    checks = _checks(gates, windows)
    alpha = ROLLOUT_ALPHA / (len(plan.steps) * max(1, len(checks)))
    verdicts = tuple(
        _evaluate(gate, metric, windows.get(gate.reads_from), step, alpha)
        for gate, metric in checks
        if has_baseline or not gate.relative
    )
    open_gates = [v for v in verdicts if v.verdict == INSUFFICIENT] if has_baseline else []
    conditions = StepConditions(
        time=TimeOnStep((now - step_started_at).total_seconds(), step.min_duration_s, step.max_duration_s),
        samples=_samples_per_arm(step, windows) if has_baseline else None,
        gates=GatesPassing(
            checked=len(verdicts),
            failing=tuple(v.metric for v in verdicts if v.verdict == FAIL),
            waiting=tuple(v.metric for v in open_gates),
        ),
        approval=Approval(manual=step.approval == "manual"),
    )

    def decision(
        action: Action, reason: str, index: int = step_index, percent: int = step.exposed_percent
    ) -> Decision:
        return Decision(action, index, percent, reason, verdicts, conditions)

    failing = [v for v in verdicts if v.verdict == FAIL]
    if failing:
        failures = "; ".join(f"{v.metric} failed: {v.detail}" for v in failing)
        if any(v.on_fail == "rollback" for v in failing):
            return decision(Action.ROLLBACK, f"rolled back at {step.label}: {failures}", percent=0)
        return decision(Action.PAUSE, f"paused at {step.label}: {failures}")

    time, samples = conditions.time, conditions.samples
    short = (
        [
            f"{arm} {count_text(count)} of {count_text(samples.min_samples)} samples"
            for arm, count in samples.short.items()
        ]
        if samples is not None
        else []
    )
    waiting = (
        ([] if time.met else [f"{duration_text(time.elapsed_s)} of {duration_text(time.min_duration_s)}"])
        + short
        + [f"{v.metric} {v.verdict} ({v.detail})" for v in open_gates]
        + (["manual approval"] if conditions.approval.manual else [])
    )
    if promote or conditions.met:
        why = f"promoted past {'; '.join(waiting)}" if waiting else "every gate passed"
        why += f" after {duration_text(time.elapsed_s)}"
        if step_index == len(plan.steps) - 1:
            return decision(Action.SUCCEED, f"succeeded at {step.label}: {why}")
        following = plan.steps[step_index + 1]
        reason = f"advanced from {step.label} to {following.label}: {why}"
        return decision(Action.ADVANCE, reason, step_index + 1, following.exposed_percent)
    if conditions.pauses_at_max_duration and time.past_max:
        still = [f"{v.metric} ({v.detail})" for v in open_gates]
        return decision(
            Action.PAUSE,
            f"paused at {step.label}: the step ran {duration_text(time.elapsed_s)} (max "
            f"{duration_text(time.max_duration_s)}) without every gate passing; still insufficient_data: "
            + "; ".join(still + short),
        )
    return decision(Action.HOLD, f"holding at {step.label}: waiting for {'; '.join(waiting)}")
