"""Everything the live page of a rollout shows, read in one place: the rollout, its plan with the
current step and what it waits for, per-arm charts of its gate metrics, the latest verdicts, the
per-arm totals and the history of transitions.

What a step waits for is what the controller's latest decision checked (`StepConditions`, stored
with the rollout and with each transition it made): the page shows it and never works a rule out
again. A step the controller has not evaluated yet says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from rollouts.as_json import shadow_percent
from rollouts.charts import ARM_NAMES, Buckets, Chart, chart_buckets, chart_build
from rollouts.engine import StepConditions, TimeOnStep
from rollouts.figures import (
    NONE,
    REQUESTS,
    count_text,
    duration_text,
    metric_text,
    metric_title,
    percent_value,
    rule_text,
    verdict_change_text,
)
from rollouts.gate_metrics import ALL_SCORES, SCORE_PREFIX
from rollouts.models import Rollout, RolloutTransition
from rollouts.plan import ABSOLUTE_RULES, Gate, Plan, parse_gates
from rollouts.selectors import EXPOSED_ARMS, rollout_get_with_stats
from rollouts.sources import outcome_store
from rollouts.stats import CLOCK_ALLOWANCE, ArmStats, arm_summary

# Charts cover the rollout from its start, or its last day when it ran longer.
CHART_SPAN = timedelta(hours=24)
ACTIVE = {state.value for state in Rollout.ACTIVE_STATES}
SHADOW_ARMS = ("shadow", "shadow_baseline")
MARKED_EVENTS = {"started", "advanced", "paused", "resumed", "rolled_back", "aborted", "succeeded"}


@dataclass(frozen=True)
class ConditionRow:
    name: str
    met: bool
    detail: str


@dataclass(frozen=True)
class StepProgress:
    summary: str
    conditions: tuple[ConditionRow, ...]


@dataclass(frozen=True)
class PlanRow:
    number: int
    percent: int
    shadow: bool
    """A shadow step: ``percent`` of units run the candidate unseen; nobody is served it."""
    min_duration: str
    min_samples: int
    max_duration: str
    approval: str
    status: str
    """done, current, next or ""."""
    reached_at: datetime | None


@dataclass(frozen=True)
class VerdictRow:
    metric: str
    title: str
    verdict: str
    verdict_text: str
    baseline: str
    candidate: str
    change: str
    rule: str
    source: str
    on_fail: str
    detail: str


@dataclass(frozen=True)
class GateRow:
    metric: str
    title: str
    rule: str
    source: str
    min_samples: str
    on_fail: str


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    event: str
    event_text: str
    from_state: str
    to_state: str
    step_number: int
    percent: float
    share: str
    """The candidate's share after the transition: ``10%``, or ``shadow 20%``."""
    actor: str
    reason: str
    verdicts: list[VerdictRow]
    conditions: tuple[ConditionRow, ...]


ARM_COLUMNS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate", "cost_per_request")


@dataclass(frozen=True)
class ArmRow:
    arm: str
    name: str
    version: int
    requests: str
    errors: str
    cells: list[str]
    """The ARM_COLUMNS, then each score of LivePage.score_names."""


@dataclass(frozen=True)
class LivePage:
    rollout: Rollout
    now: datetime
    active: bool
    state_text: str
    verdicts_note: str
    step_count: int
    shadow_percent: int | None
    """In a shadow step: the percent of units that run the candidate unseen."""
    shadowed: bool
    """The plan has a shadow step: the charts and totals show the shadow arms."""
    step_started_at: datetime | None
    progress: StepProgress
    plan: list[PlanRow]
    charts: list[Chart]
    charts_show_limits: bool
    chart_since: datetime
    chart_from_start: bool
    verdicts: list[VerdictRow]
    gates: list[GateRow]
    arms: list[ArmRow]
    arm_headers: list[str]
    override_outcomes: str  # of callers an override served (in no gate); "" when none
    history: list[HistoryRow]


def verdict_row(verdict: dict[str, Any]) -> VerdictRow:
    """A verdict as stored (`rollouts.engine.Verdict.to_json`)."""
    metric = verdict["metric"]
    baseline, candidate = verdict["baseline"], verdict["candidate"]
    change = ""
    if baseline is not None and candidate is not None:
        change = verdict_change_text(metric, verdict["rule"], baseline, candidate)
    return VerdictRow(
        metric=metric,
        title=metric_title(metric),
        verdict=verdict["verdict"],
        verdict_text=verdict["verdict"].replace("_", " "),
        baseline=metric_text(metric, baseline),
        candidate=metric_text(metric, candidate),
        change=change,
        rule=rule_text(metric, verdict["rule"], verdict["limit"]),
        source=verdict["source"],
        on_fail=verdict["on_fail"],
        detail=verdict["detail"],
    )


def _gate_row(gate: Gate) -> GateRow:
    return GateRow(
        metric=gate.metric,
        title=metric_title(gate.metric),
        rule=rule_text(gate.metric, gate.rule, gate.limit),
        source=gate.source,
        min_samples="the step's" if gate.min_samples is None else count_text(gate.min_samples),
        on_fail=gate.on_fail,
    )


def _reached(history: list[RolloutTransition]) -> dict[int, datetime]:
    """When the rollout last entered each step."""
    reached: dict[int, datetime] = {}
    for transition in history:
        if transition.event in ("started", "advanced"):
            reached[transition.step_index] = transition.at
    return reached


def _plan_rows(rollout: Rollout, history: list[RolloutTransition]) -> list[PlanRow]:
    reached = _reached(history)
    succeeded = rollout.state == Rollout.State.SUCCEEDED
    steps = Plan.from_json(rollout.plan).steps
    rows = []
    for index, step in enumerate(steps):
        if index < rollout.step_index or (succeeded and index == rollout.step_index):
            status = "done"
        elif index == rollout.step_index and rollout.state != Rollout.State.PENDING:
            status = "current" if rollout.state in ACTIVE else "ended"
        else:
            status = "next" if index == rollout.step_index + 1 and rollout.state in ACTIVE else ""
        rows.append(
            PlanRow(
                number=index + 1,
                percent=step.percent,
                shadow=step.shadow,
                min_duration=duration_text(step.min_duration_s),
                min_samples=step.min_samples,
                max_duration=NONE if index == len(steps) - 1 else duration_text(step.max_duration_s),
                approval=step.approval,
                status=status,
                reached_at=reached.get(index),
            )
        )
    return rows


def _chart_metrics(gates: tuple[Gate, ...], score_names: list[str]) -> list[str]:
    """Requests, then every gate's metric once, in the gates' order (``score:*``: each score)."""
    metrics = [REQUESTS]
    for gate in gates:
        names = [SCORE_PREFIX + name for name in score_names] if gate.metric == ALL_SCORES else [gate.metric]
        metrics.extend(name for name in names if name not in metrics)
    return metrics


def _absolute_limits(gates: tuple[Gate, ...]) -> dict[str, tuple[float, str]]:
    return {
        gate.metric: (gate.limit, rule_text(gate.metric, gate.rule, gate.limit))
        for gate in gates
        if gate.rule in ABSOLUTE_RULES and gate.metric != ALL_SCORES
    }


def _charts(
    rollout: Rollout, history: list[RolloutTransition], now: datetime
) -> tuple[list[Chart], datetime, bool]:
    start = rollout.started_at or rollout.created_at
    end = rollout.ended_at or now
    since = max(start, end - CHART_SPAN)
    series = outcome_store().arm_series(rollout_id=rollout.pk, since=since, until=end + CLOCK_ALLOWANCE)
    # Up to now, or to the last minute with outcomes when callers' clocks run ahead.
    until = max(
        [end + timedelta(seconds=1)] + [minute + timedelta(minutes=1) for minute, _, _ in series[-1:]]
    )
    buckets: Buckets = chart_buckets(series, since=since, until=until)
    score_names = sorted({name for _, _, stats in series for name, _ in stats.scores})
    markers = [(t.at, _marker_label(rollout, t)) for t in history if t.event in MARKED_EVENTS]
    gates = parse_gates(rollout.gates)
    limits = _absolute_limits(gates)
    arms = (*EXPOSED_ARMS, *SHADOW_ARMS) if _shadowed(rollout) else EXPOSED_ARMS
    charts = []
    for metric in _chart_metrics(gates, score_names):
        limit, limit_text = limits.get(metric, (None, ""))
        charts.append(
            chart_build(
                metric,
                buckets,
                limit=limit,
                limit_text=limit_text,
                markers=markers,
                complete_until=None if rollout.ended_at else now,
                arms=arms,
            )
        )
    return charts, buckets.since, since == start


def _marker_label(rollout: Rollout, transition: RolloutTransition) -> str:
    if transition.event in ("started", "advanced"):
        return share_text(rollout, transition.percent, transition.step_index, transition.to_state)
    return transition.event.replace("_", " ")


def _shadowed(rollout: Rollout) -> bool:
    """Whether the rollout's plan has a shadow step (its page shows the shadow arms)."""
    return any(step.get("shadow") for step in rollout.plan)


def share_text(rollout: Rollout, percent: Any, step_index: int, state: str) -> str:
    """The candidate's share at a step: ``10%``, or ``shadow 20%`` on a shadow step."""
    shadow = shadow_percent(rollout.plan, step_index, state)
    return f"shadow {shadow}%" if shadow is not None else f"{percent_value(percent)}%"


def _ended_summary(rollout: Rollout) -> str:
    when = f"{rollout.ended_at:%Y-%m-%d %H:%M:%S} UTC" if rollout.ended_at else ""
    baseline, candidate = rollout.baseline.version, rollout.candidate.version
    where = f"at step {rollout.step_index + 1} of {len(rollout.plan)}"
    if rollout.state == Rollout.State.SUCCEEDED:
        return f"Succeeded {when}: v{candidate} is production, for everyone."
    if rollout.state == Rollout.State.ROLLED_BACK:
        return f"Rolled back {when} {where}: every user is on v{baseline} again."
    return f"Aborted {when} {where}: every user is on v{baseline}."


def _evaluated_on_this_step(rollout: Rollout) -> bool:
    """Whether the latest verdicts and conditions are of the current step's window."""
    evaluated, began = rollout.last_evaluated_at, rollout.step_started_at
    return evaluated is not None and began is not None and evaluated > began


def _verdicts_note(rollout: Rollout) -> str:
    """Which window the latest verdicts are of."""
    evaluated = rollout.last_evaluated_at
    if evaluated is None:
        return "not evaluated yet"
    at = f"{evaluated:%H:%M:%S}"
    if rollout.state not in ACTIVE:
        return f"last verdicts, at {at}"
    if _evaluated_on_this_step(rollout):
        return f"latest verdicts, at {at}, on this step's window"
    return f"from {at}, before this step began: the next evaluation is of this step"


def _time_detail(time: TimeOnStep) -> str:
    elapsed, needed = duration_text(time.elapsed_s), duration_text(time.min_duration_s)
    if time.min_duration_s == 0:
        return "no minimum time"
    if time.met:
        return f"{elapsed} on this step of {needed}"
    return f"{elapsed} of {needed}: {duration_text(time.min_duration_s - time.elapsed_s)} left"


def _gates_detail(conditions: StepConditions) -> str:
    gates = conditions.gates
    if gates.failing:
        return "failing: " + ", ".join(metric_title(metric) for metric in gates.failing)
    if conditions.samples is None:
        return "no absolute gate fails (insufficient_data does not hold this step)"
    if gates.waiting:
        return "insufficient data: " + ", ".join(metric_title(metric) for metric in gates.waiting)
    return "every gate passes" if gates.checked else "no gates"


def condition_rows(conditions: StepConditions, *, shadow: bool = False) -> tuple[ConditionRow, ...]:
    """What a decision checked, one row per condition, in words (``shadow``: of a shadow step,
    whose arms are the shadow runs and the baseline of the same units)."""
    rows = [ConditionRow("time", conditions.time.met, _time_detail(conditions.time))]
    samples = conditions.samples
    if samples is not None:
        needed = count_text(samples.min_samples)
        baseline, candidate = count_text(samples.baseline), count_text(samples.candidate)
        names = ("baseline of the shadow sample", "shadow") if shadow else ("baseline", "candidate")
        detail = f"{names[0]} {baseline} of {needed} · {names[1]} {candidate} of {needed}"
        rows.append(ConditionRow("samples per arm", samples.met, detail))
    rows.append(ConditionRow("gates", conditions.gates.met, _gates_detail(conditions)))
    manual = conditions.approval.manual
    rows.append(
        ConditionRow(
            "approval", not manual, "manual: someone must promote this step" if manual else "automatic"
        )
    )
    return tuple(rows)


def _progress(rollout: Rollout) -> StepProgress:
    """The current step of an active rollout, as the controller's latest decision found it."""
    percent = percent_value(rollout.percent)
    if rollout.state == Rollout.State.PENDING:
        first = Plan.from_json(rollout.plan).steps[0]
        start = (
            f"Start runs the candidate unseen for {first.percent}% of units (a shadow step)."
            if first.shadow
            else f"Start sends {first.percent}% to the candidate."
        )
        return StepProgress(f"Not started: everyone gets production. {start}", ())
    evaluated = _evaluated_on_this_step(rollout) and bool(rollout.last_conditions)
    conditions = StepConditions.from_json(rollout.last_conditions) if evaluated else None
    shadow = shadow_percent(rollout.plan, rollout.step_index, rollout.state) is not None
    rows = condition_rows(conditions, shadow=shadow) if conditions is not None else ()
    at = f"{rollout.last_evaluated_at:%H:%M:%S}" if evaluated else ""
    if rollout.state == Rollout.State.PAUSED:
        summary = (
            f"Paused: {percent}% stay on the candidate and nothing is evaluated. "
            "Resume restarts this step's clock and statistics."
        )
        return StepProgress(summary + (f" At the last evaluation, {at} UTC:" if rows else ""), rows)
    if conditions is None or rollout.step_started_at is None:
        every = settings.PROMPTRAMP_TICK_SECONDS
        return StepProgress(f"Not evaluated on this step yet: the controller looks every {every} s.", ())
    # The step is still here: the decision held it, so some condition was not met.
    waiting = [row.name for row in rows if not row.met]
    summary = f"Waiting for {', '.join(waiting)} (as of {at} UTC)."
    if conditions.pauses_at_max_duration:
        max_s = conditions.time.max_duration_s
        pauses_at = rollout.step_started_at + timedelta(seconds=max_s)
        summary += (
            f" If the gates have not all passed after {duration_text(max_s)} on this step "
            f"(at {pauses_at:%Y-%m-%d %H:%M} UTC), the rollout pauses."
        )
    return StepProgress(summary, rows)


def _transition_conditions(transition: RolloutTransition) -> tuple[ConditionRow, ...]:
    return condition_rows(StepConditions.from_json(transition.conditions)) if transition.conditions else ()


def _override_outcomes(stats: ArmStats) -> str:
    if not stats.samples:
        return ""
    summary = arm_summary(stats)
    return (
        f"Callers an override served reported {count_text(summary['samples'])} requests, "
        f"{count_text(summary['errors'])} errors: shown apart, in no gate."
    )


def live_page(rollout_id: int, *, now: datetime) -> LivePage:
    detail = rollout_get_with_stats(rollout_id)
    rollout, history = detail.rollout, detail.history
    active = rollout.state in ACTIVE
    progress = _progress(rollout) if active else StepProgress(_ended_summary(rollout), ())
    charts, chart_since, from_start = _charts(rollout, history, now)
    versions = {
        "baseline": rollout.baseline.version,
        "candidate": rollout.candidate.version,
        "shadow": rollout.candidate.version,
        "shadow_baseline": rollout.baseline.version,
    }
    summaries = {arm: arm_summary(stats) for arm, stats in detail.arms.items()}
    score_names = sorted({name for summary in summaries.values() for name in summary["scores"]})
    arms = [
        ArmRow(
            arm=arm,
            name=ARM_NAMES.get(arm, arm),
            version=versions[arm],
            requests=count_text(summary["samples"]),
            errors=count_text(summary["errors"]),
            cells=[metric_text(column, summary[column]) for column in ARM_COLUMNS]
            + [metric_text(SCORE_PREFIX + name, summary["scores"].get(name)) for name in score_names],
        )
        for arm, summary in summaries.items()
    ]
    return LivePage(
        rollout=rollout,
        now=now,
        active=active,
        state_text=rollout.state.replace("_", " ").capitalize(),
        verdicts_note=_verdicts_note(rollout),
        step_count=len(rollout.plan),
        shadow_percent=shadow_percent(rollout.plan, rollout.step_index, rollout.state),
        shadowed=_shadowed(rollout),
        step_started_at=rollout.step_started_at,
        progress=progress,
        plan=_plan_rows(rollout, history),
        charts=charts,
        charts_show_limits=any(chart.limit for chart in charts),
        chart_since=chart_since,
        chart_from_start=from_start,
        verdicts=[verdict_row(v) for v in rollout.last_verdicts],
        gates=[_gate_row(gate) for gate in parse_gates(rollout.gates)],
        arms=arms,
        arm_headers=[metric_title(column) for column in ARM_COLUMNS]
        + [metric_title(SCORE_PREFIX + name) for name in score_names],
        override_outcomes=_override_outcomes(detail.override_outcomes),
        history=[
            HistoryRow(
                at=t.at,
                event=t.event,
                event_text=t.event.replace("_", " "),
                from_state=t.from_state,
                to_state=t.to_state,
                step_number=t.step_index + 1,
                percent=percent_value(t.percent),
                share=share_text(rollout, t.percent, t.step_index, t.to_state),
                actor=t.actor_name,
                reason=t.reason,
                verdicts=[verdict_row(v) for v in t.verdicts],
                conditions=_transition_conditions(t),
            )
            for t in reversed(history)
        ],
    )
