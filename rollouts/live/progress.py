"""What a rollout's current step is waiting for, as the live page shows it.

Pure: no Django, time is an argument. The conditions mirror the controller's (rollouts.engine):
a step below 100% advances once its ``min_duration_s`` has passed, each arm has ``min_samples``,
every gate passes and, for ``approval: manual``, someone promotes it. The 100% step has no
baseline arm: it needs no samples and no relative gate, and ``insufficient_data`` does not hold
it; it ends once its time has passed unless an absolute gate fails. A step whose gates have not
all passed by its ``max_duration_s`` pauses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollouts.figures import duration_text, metric_title

PASS, FAIL = "pass", "fail"
RUNNING, PAUSED, PENDING = "running", "paused", "pending"
DEFAULT_MAX_DURATION_S = 86400


@dataclass(frozen=True)
class Condition:
    name: str
    met: bool
    detail: str


@dataclass(frozen=True)
class StepProgress:
    summary: str
    conditions: tuple[Condition, ...]
    elapsed_s: float | None
    """Seconds since the step (or its resume) started; None when not running or paused."""


def _time(step: Mapping[str, Any], elapsed: float, state: str) -> Condition:
    needed = int(step["min_duration_s"])
    if needed == 0:
        return Condition("time", True, "no minimum time")
    if state == PAUSED:
        return Condition("time", False, f"{duration_text(needed)} from the resume (the clock restarts)")
    if elapsed >= needed:
        return Condition("time", True, f"{duration_text(elapsed)} on this step of {duration_text(needed)}")
    left = duration_text(needed - elapsed)
    return Condition("time", False, f"{duration_text(elapsed)} of {duration_text(needed)}: {left} left")


def _samples(step: Mapping[str, Any], samples: Mapping[str, int]) -> Condition:
    needed = int(step["min_samples"])
    counts = [(arm, samples.get(arm, 0)) for arm in ("baseline", "candidate")]
    detail = " · ".join(f"{arm} {count:,} of {needed:,}" for arm, count in counts)
    return Condition("samples per arm", all(count >= needed for _, count in counts), detail)


def _gates(verdicts: Sequence[Mapping[str, Any]], *, last_step: bool, fresh: bool, state: str) -> Condition:
    if state == PAUSED:
        return Condition("gates", False, "not evaluated while paused")
    if not fresh:
        return Condition("gates", False, "not evaluated on this step yet")
    failing = [v["metric"] for v in verdicts if v["verdict"] == FAIL]
    if failing:
        return Condition("gates", False, "failing: " + ", ".join(failing))
    if last_step:
        return Condition("gates", True, "no absolute gate fails (insufficient_data does not hold this step)")
    open_gates: dict[str, list[str]] = {}
    for v in verdicts:
        if v["verdict"] != PASS:
            open_gates.setdefault(v["verdict"], []).append(metric_title(v["metric"]))
    if open_gates:
        groups = "; ".join(
            f"{verdict.replace('_', ' ')}: {', '.join(names)}" for verdict, names in open_gates.items()
        )
        return Condition("gates", False, groups)
    return Condition("gates", True, "every gate passes" if verdicts else "no gates")


def step_progress(
    *,
    plan: Sequence[Mapping[str, Any]],
    step_index: int,
    state: str,
    step_started_at: datetime | None,
    now: datetime,
    samples: Mapping[str, int],
    verdicts: Sequence[Mapping[str, Any]],
    last_evaluated_at: datetime | None,
) -> StepProgress:
    """The conditions of the current step of an active rollout, met or not (for a pending one,
    only a summary). ``samples`` are each arm's requests in the step's window and ``verdicts``
    the controller's latest (they belong to this step when evaluated after it began)."""
    step = plan[step_index]
    if state == PENDING:
        summary = f"Not started: everyone gets production. Start sends {step['percent']}% to the candidate."
        return StepProgress(summary, (), None)
    if state not in (RUNNING, PAUSED) or step_started_at is None:
        raise ValueError(f"a {state} rollout has no step in progress")
    elapsed = max(0.0, (now - step_started_at).total_seconds())
    last_step = step_index == len(plan) - 1
    fresh = last_evaluated_at is not None and last_evaluated_at > step_started_at
    conditions = [_time(step, elapsed, state)]
    if not last_step:
        conditions.append(_samples(step, samples))
    conditions.append(_gates(verdicts, last_step=last_step, fresh=fresh, state=state))
    manual = step.get("approval") == "manual"
    conditions.append(
        Condition("approval", False, "manual: someone must promote this step")
        if manual
        else Condition("approval", True, "automatic")
    )
    if state == PAUSED:
        summary = (
            f"Paused: {step['percent']}% stay on the candidate and nothing is evaluated. "
            "Resume restarts this step's clock and statistics."
        )
        return StepProgress(summary, tuple(conditions), None)
    waiting = [c.name for c in conditions if not c.met]
    if not waiting:
        summary = "Every condition is met: the controller moves on at its next tick."
    else:
        summary = "Waiting for " + ", ".join(waiting) + "."
        if {"samples per arm", "gates"} & set(waiting):
            max_s = int(step.get("max_duration_s") or DEFAULT_MAX_DURATION_S)
            summary += (
                f" If the gates have not all passed after {duration_text(max_s)} "
                f"({duration_text(max(0.0, max_s - elapsed))} from now), the rollout pauses."
            )
    return StepProgress(summary, tuple(conditions), elapsed)
