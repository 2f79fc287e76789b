"""The controller's metrics (see ``core.cluster_metrics``): counts kept in Redis by whichever
process did the work, and gauges of the active rollouts and of the webhooks' outbox read from
PostgreSQL when /metrics is scraped (the deliveries are counted by ``rollouts.webhooks``).

Labels stay bounded: a rollout's prompt and id appear only while it is active (pending, running
or paused), a gate's metric is one of ``METRICS`` or ``score`` (every ``score:<name>`` counted
together), kinds, verdicts and results are fixed sets. Never a unit, an attribute or a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from core.actors import Actor
from core.cluster_metrics import SharedCounter, SharedHistogram, SharedTimestamp, record, shared
from rollouts.engine import Verdict
from rollouts.gate_metrics import METRICS
from rollouts.models import Outbox, Rollout
from rollouts.webhooks import EVENTS

SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

TRANSITIONS = shared(
    SharedCounter(
        "promptramp_rollout_transitions",
        "Rollout transitions by kind (started, advanced, paused, resumed, succeeded, rolled_back, "
        "aborted) and by whom (controller or person).",
        ("kind", "by"),
        known=tuple((kind, by) for kind in EVENTS for by in ("controller", "person")),
    )
)
VERDICTS = shared(
    SharedCounter(
        "promptramp_gate_verdicts",
        "Gate verdicts of the controller's evaluations, by metric (score: every score:<name>) and "
        "verdict (pass, fail, insufficient, …).",
        ("metric", "verdict"),
    )
)
EVALUATION_SECONDS = shared(
    SharedHistogram(
        "promptramp_controller_evaluation_seconds",
        "Time of one controller evaluation run (read the sources, decide, apply) over its rollouts.",
        SECONDS_BUCKETS,
    )
)
TICK_SECONDS = shared(
    SharedHistogram(
        "promptramp_controller_tick_seconds",
        "Time of one controller tick (choose the rollouts due and queue their evaluations).",
        SECONDS_BUCKETS,
    )
)
LAST_TICK = shared(
    SharedTimestamp("promptramp_controller_last_tick_timestamp_seconds", "When the last controller tick ran.")
)
LAST_EVALUATION = shared(
    SharedTimestamp(
        "promptramp_controller_last_evaluation_timestamp_seconds",
        "When the last controller evaluation of a running rollout finished.",
    )
)


def transition_counted(*, kind: str, actor: Actor) -> list[tuple[str, float]]:
    return [TRANSITIONS.by(kind, "controller" if actor.via == "controller" else "person")]


def evaluations_record(*, verdicts: Iterable[Verdict], seconds: float) -> None:
    increments = [
        VERDICTS.by(v.metric if v.metric in METRICS else "score", v.verdict) for v in verdicts
    ] + EVALUATION_SECONDS.observe(seconds)
    record(increments, moments=[LAST_EVALUATION])


def tick_record(*, seconds: float) -> None:
    record(TICK_SECONDS.observe(seconds), moments=[LAST_TICK])


def read_gauges() -> Sequence[Metric]:
    """The active rollouts' percent and state, how many are in each active state, and the
    webhook messages not yet delivered (nor given up)."""
    percent = GaugeMetricFamily(
        "promptramp_rollout_percent",
        "Percent of units on the candidate, per active rollout.",
        labels=["prompt", "rollout"],
    )
    state = GaugeMetricFamily(
        "promptramp_rollout_state",
        "1 for the state an active rollout is in (pending, running or paused).",
        labels=["prompt", "rollout", "state"],
    )
    counts: dict[str, int] = dict.fromkeys(map(str, Rollout.ACTIVE_STATES), 0)
    active = Rollout.objects.filter(state__in=Rollout.ACTIVE_STATES).values_list(
        "pk", "prompt__name", "state", "percent"
    )
    for pk, prompt, current, value in active.order_by("pk"):
        percent.add_metric([prompt, str(pk)], float(value))
        state.add_metric([prompt, str(pk), current], 1)
        counts[current] += 1
    by_state = GaugeMetricFamily("promptramp_rollouts", "Active rollouts by state.", labels=["state"])
    for name, count in counts.items():
        by_state.add_metric([str(name)], count)
    backlog = GaugeMetricFamily(
        "promptramp_webhook_outbox_backlog",
        "Webhook messages waiting for delivery (not delivered, not given up).",
    )
    backlog.add_metric([], Outbox.objects.filter(delivered_at__isnull=True, gave_up_at__isnull=True).count())
    return [percent, state, by_state, backlog]
