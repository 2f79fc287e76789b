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

An observe-only gate (``on_fail: "observe"``) records its verdict and nothing else: it never
rolls back or pauses, never holds an advance, and takes no share of the budget (the gates that
act, and the traffic check unless it observes too, split it as if it were absent). Its own
verdict is judged at the share it would get if every gate and the traffic check acted, so it says
what the gate would decide once turned on.

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
from rollouts.plan import DEFAULT_SOURCE, DEFAULT_TRAFFIC, OBSERVE, Gate, Plan, Step, TrafficCheck
from rollouts.stats import ArmStats, Estimate, Exposures

ROLLOUT_ALPHA = 0.005
BETA = 0.05
# Mixture scales of the confidence sequences, in units of the gate's limit (`stats.mixture_halfwidth`):
# wide to fail quickly on effects far beyond the limit, narrow to pass close below it.
FAIL_SCALE = 10.0
ABSOLUTE_FAIL_SCALE = 1.0
ABSOLUTE_PASS_SCALE = 0.1
# The built-in traffic check of every step below 100% (`_traffic_verdict`).
TRAFFIC = "traffic"
SHARE_TOLERANCE = 0.10  # the candidate's share may be off the step's percent by less than 10% of it
REPORT_DROP = 0.20  # its outcomes per exposure may be less than 20% below the baseline's

PASS = "pass"
FAIL = "fail"
INSUFFICIENT = "insufficient_data"


# --- verdicts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceWindow:
    """One source's per-arm statistics for the current step's window, or why it has none.

    At the 100% step the baseline is empty (`ArmStats()`). In a shadow step ``candidate`` is the
    shadow runs and ``baseline`` the baseline outcomes of the same units (the shadow sample).
    ``exposures`` are how often the server and the SDKs served each arm (the ingest source's;
    None when there were none): in a shadow step the baseline's (every caller's) and the
    shadow's, whose outcomes the traffic check sets against them: ``candidate.samples``, and
    ``baseline_reports`` (every baseline outcome of the step, the sample's and the others'; None:
    ``baseline.samples``).
    """

    baseline: ArmStats
    candidate: ArmStats
    error: str | None = None
    exposures: Exposures | None = None
    baseline_reports: int | None = None


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


# --- the traffic check ---------------------------------------------------------------------


def _traffic_verdict(step: Step, window: SourceWindow | None, alpha: float, on_fail: str) -> Verdict:
    """The built-in ``traffic`` check of a step below 100%, at level ``alpha``.

    It fails when (a) the candidate's share of the traffic is off the step's percent by
    `SHARE_TOLERANCE` of it or more, or (b) the candidate's outcomes per exposure are
    `REPORT_DROP` or more below the baseline's: a candidate that crashes before it reports, or
    whose reports are lost, must not look healthy. Each (half of ``alpha``) is, as a relative
    gate's, Wald's test between "as it should be" and "off by the tolerance" with a confidence
    sequence that fails it at once when the data are far beyond the tolerance (half of its
    budget each), valid however often it is looked at, with variances that hold when a unit is many
    requests of one arm: the share is counted in distinct units when the server saw units
    (each unit is in the candidate with probability percent / 100, independently of the
    others), and the report ratio's variance grows by `ArmExposures.clustering`. Without
    exposure counts (a) counts outcomes and (b) is skipped.

    In a shadow step nobody is served the candidate: its shadow runs stand in for it in (b)
    (their outcomes per exposure against every baseline outcome per baseline exposure), so a
    shadow that crashes before it reports is caught before anyone is served the candidate. (a)
    is not checked there: an SDK runs at most ``shadow_per_minute`` shadows and drops the rest,
    so the shadow's share is below the percent by design.
    """
    p = step.percent / 100

    def verdict(result: str, detail: str, share: float | None = None) -> Verdict:
        return Verdict(TRAFFIC, result, p, share, detail, DEFAULT_SOURCE, TRAFFIC, SHARE_TOLERANCE, on_fail)

    if window is None:
        return verdict(INSUFFICIENT, f"no data from source {DEFAULT_SOURCE}")
    if window.error is not None:
        return verdict(INSUFFICIENT, f"source {DEFAULT_SOURCE} unavailable: {window.error}")
    results: list[str] = []
    share: float | None = None
    if step.shadow:
        texts = ["share not checked in a shadow step (SDKs cap their shadow runs)"]
    else:
        share_result, share_text, share = _share_test(p, window, alpha / 2)
        results, texts = [share_result], [share_text]
    exposures = window.exposures
    if exposures is not None and exposures.baseline.count and exposures.candidate.count:
        arm = "shadow" if step.shadow else "candidate"
        report_result, report_text = _report_test(window, exposures, alpha / 2, arm)
        results.append(report_result)
        texts.append(report_text)
    else:
        texts.append("outcomes per exposure not checked (no exposure counts)")
    if FAIL in results:
        result = FAIL
    elif results and all(r == PASS for r in results):
        result = PASS
    else:
        result = INSUFFICIENT
    return verdict(result, "; ".join(texts), share)


def _share_test(p: float, window: SourceWindow, alpha: float) -> tuple[str, str, float | None]:
    """(a): the candidate's share of distinct units, else of exposures, else of outcomes."""
    exposures = window.exposures
    counting_error = 0.0
    if exposures is not None and exposures.baseline.units + exposures.candidate.units > 0:
        n_b, n_c, what = exposures.baseline.units, exposures.candidate.units, "distinct units"
        clustering, counting_error = 1.0, stats.HLL_RELATIVE_ERROR
    elif exposures is not None and exposures.baseline.count + exposures.candidate.count > 0:
        n_b, n_c, what = exposures.baseline.count, exposures.candidate.count, "exposures"
        both = stats.ArmExposures(
            bucket_total=exposures.baseline.bucket_total + exposures.candidate.bucket_total,
            bucket_total_sq=exposures.baseline.bucket_total_sq + exposures.candidate.bucket_total_sq,
        )
        clustering = both.clustering
    else:
        n_b, n_c, what, clustering = window.baseline.samples, window.candidate.samples, "outcomes", 1.0
    low, high = p * (1 - SHARE_TOLERANCE), min(1.0, p * (1 + SHARE_TOLERANCE))
    allowed = (
        f"step {number_text(p * 100, 1)}%, allowed {number_text(low * 100, 1)}-{number_text(high * 100, 1)}%"
    )
    if min(n_b, n_c) < stats.MIN_OBSERVATIONS:
        counts = f"{count_text(n_c)} candidate / {count_text(n_b)} baseline"
        return INSUFFICIENT, f"share needs {stats.MIN_OBSERVATIONS} {what} per arm ({counts})", None
    n = n_b + n_c
    share = n_c / n
    # Binomial variance at the worst of the shares compared, times the clustering of requests
    # into units, plus the counting error of two HyperLogLog estimates (the share moves by
    # share * (1 - share) per relative error of either count).
    worst = max(s * (1 - s) for s in (p, low, high))
    variance = worst * clustering / n + 2 * (counting_error * share * (1 - share)) ** 2
    effect = Estimate(share - p, math.sqrt(variance))
    tolerance = SHARE_TOLERANCE * p
    llr = max(stats.sprt_log_likelihood_ratio(effect, side * tolerance) for side in (1, -1))
    figures = f"candidate share {number_text(share * 100, 1)}% of {count_text(n)} {what} ({allowed})"
    fail_at = math.log(4 / alpha)  # each side a quarter of alpha; the confidence sequence half
    if llr >= fail_at:
        return (
            FAIL,
            f"{figures}: off the step's percent (LLR {number_text(llr, 1)} >= {number_text(fail_at, 1)})",
            share,
        )
    least = abs(effect.value) - stats.mixture_halfwidth(
        effect.standard_error, alpha / 2, FAIL_SCALE * tolerance
    )
    if least > tolerance:
        return (
            FAIL,
            f"{figures}: off the step's percent by at least {number_text(least * 100, 1)} points",
            share,
        )
    if llr <= math.log(BETA):
        return PASS, f"{figures}: as it should be", share
    return INSUFFICIENT, f"{figures}: not yet conclusive (LLR {number_text(llr, 1)})", share


def _report_test(window: SourceWindow, exposures: Exposures, alpha: float, arm: str) -> tuple[str, str]:
    """(b): the candidate's outcomes per exposure against the baseline's, on the log scale;
    ``arm`` names the candidate's side (``shadow`` in a shadow step).

    An arm's outcomes are a sum over its units of each unit's reports. Whatever the
    correlation of reports within a unit, a unit of k exposures whose reports per exposure lie
    in 0..m with mean r adds at most ``k^2 r (m - r)`` to the variance (Bhatia–Davis), so an
    arm's count varies by at most ``r (m - r) * clustering * exposures``, m the least whole
    number of reports per exposure above r (1 when reports are fewer than exposures). The
    baseline's variance is taken at both arms' pooled rate (the rate they share when nothing is
    wrong), the candidate's where the drop being tested puts it, so a candidate that reports
    almost nothing is not made certain by its own small count."""
    e_b, e_c = exposures.baseline.count, exposures.candidate.count
    n_b = window.baseline.samples if window.baseline_reports is None else window.baseline_reports
    n_c = window.candidate.samples
    if min(e_b, e_c, n_b) < stats.MIN_OBSERVATIONS:
        counts = f"exposures {count_text(e_c)} {arm} / {count_text(e_b)} baseline"
        return INSUFFICIENT, f"outcomes per exposure need {stats.MIN_OBSERVATIONS} per arm ({counts})"
    ratio_b, ratio_c = n_b / e_b, n_c / e_c
    pooled, dropped = (n_b + n_c) / (e_b + e_c), (1 - REPORT_DROP) * ratio_b
    variance = _report_variance(pooled) * exposures.baseline.clustering / (
        pooled**2 * e_b
    ) + _report_variance(dropped) * exposures.candidate.clustering / (dropped**2 * e_c)
    effect = Estimate(math.log(ratio_b) - math.log((n_c + 0.5) / e_c), math.sqrt(variance))
    drop = -math.log1p(-REPORT_DROP)
    llr = stats.sprt_log_likelihood_ratio(effect, drop)
    least = effect.value - stats.mixture_halfwidth(effect.standard_error, alpha / 2, FAIL_SCALE * drop)
    figures = (
        f"outcomes per exposure {number_text(ratio_c, 2)} {arm} vs {number_text(ratio_b, 2)} baseline "
        f"({count_text(n_c)}/{count_text(e_c)} vs {count_text(n_b)}/{count_text(e_b)}; "
        f"allowed: at most {number_text(REPORT_DROP * 100, 0)}% fewer)"
    )
    fail_at = math.log(2 / alpha)  # half of alpha; the confidence sequence the other half
    if llr >= fail_at:
        return (
            FAIL,
            f"{figures}: the {arm} reports too few (LLR {number_text(llr, 1)} >= {number_text(fail_at, 1)})",
        )
    if least > drop:
        fewer = -math.expm1(-least)
        return FAIL, f"{figures}: the {arm} reports at least {number_text(fewer * 100, 0)}% fewer"
    if llr <= math.log(BETA):
        return PASS, f"{figures}: as it should be"
    return INSUFFICIENT, f"{figures}: not yet conclusive (LLR {number_text(llr, 1)})"


def _report_variance(rate: float) -> float:
    """The most a count of reports per exposure with mean ``rate`` can vary: ``rate (m - rate)``
    with m the least whole number above ``rate`` (1 below one report per exposure)."""
    return rate * (math.floor(rate) + 1 - rate)


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
    traffic: TrafficCheck = DEFAULT_TRAFFIC,
    promote: bool = False,
) -> Decision:
    """Decide a running rollout's next move from its current step's window.

    ``windows`` maps where gates read (`Gate.reads_from`: "ingest", "langfuse", "prometheus", or
    "prometheus:<server>" for a named server) to its per-arm
    statistics since the step started; a gate whose source is missing or failed is
    ``insufficient_data``. ``promote`` is an explicit promote request: it advances past manual
    approval, the wait, ``min_samples`` and ``insufficient_data`` but never past a failing gate
    (the decision is then the failing gate's rollback or pause). ``traffic`` configures the
    built-in traffic check of every step below 100% (`_traffic_verdict`, listed with the gates
    as metric ``traffic``): it acts only when it fails, as its ``on_fail`` says, and never holds
    an advance. The false-action budget ``ROLLOUT_ALPHA`` is shared by the gates' checks and
    the traffic check, unless that only observes.
    """
    if not 0 <= step_index < len(plan.steps):
        raise ValueError(f"step_index {step_index} is outside the plan's {len(plan.steps)} steps")
    step = plan.steps[step_index]
    has_baseline = step.shadow or step.percent < 100
    checks = _checks(gates, windows)
    acting_checks = [check for check in checks if check[0].on_fail != OBSERVE]
    shares = len(acting_checks) + (traffic.on_fail != OBSERVE)
    alpha = ROLLOUT_ALPHA / (len(plan.steps) * max(1, shares))
    observe_alpha = ROLLOUT_ALPHA / (len(plan.steps) * (len(checks) + 1))
    verdicts = tuple(
        _evaluate(
            gate,
            metric,
            windows.get(gate.reads_from),
            step,
            observe_alpha if gate.on_fail == OBSERVE else alpha,
        )
        for gate, metric in checks
        if has_baseline or not gate.relative
    )
    if has_baseline:
        traffic_alpha = observe_alpha if traffic.on_fail == OBSERVE else alpha
        verdicts += (_traffic_verdict(step, windows.get(DEFAULT_SOURCE), traffic_alpha, traffic.on_fail),)
    acting = [v for v in verdicts if v.on_fail != OBSERVE]
    open_gates = (
        [v for v in acting if v.verdict == INSUFFICIENT and v.metric != TRAFFIC] if has_baseline else []
    )
    conditions = StepConditions(
        time=TimeOnStep((now - step_started_at).total_seconds(), step.min_duration_s, step.max_duration_s),
        samples=_samples_per_arm(step, windows) if has_baseline else None,
        gates=GatesPassing(
            checked=len(acting),
            failing=tuple(v.metric for v in acting if v.verdict == FAIL),
            waiting=tuple(v.metric for v in open_gates),
        ),
        approval=Approval(manual=step.approval == "manual"),
    )
    observed = "".join(
        f"; observe only, no action: {v.metric} failed: {v.detail}"
        for v in verdicts
        if v.on_fail == OBSERVE and v.verdict == FAIL
    )

    def decision(
        action: Action, reason: str, index: int = step_index, percent: int = step.exposed_percent
    ) -> Decision:
        return Decision(action, index, percent, reason + observed, verdicts, conditions)

    failing = [v for v in acting if v.verdict == FAIL]
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
