"""Data for the controller benchmark: many prompts, each with a running rollout (bulk inserts),
and outcome events for both arms through the ingest path (then flushed to PostgreSQL), split as
the step splits traffic, so the built-in traffic check sees the share it expects."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

import orjson
from django.utils import timezone

from outcomes.services import events_ingest, outcome_minutes_flush
from registry.models import PRODUCTION, Label, Prompt, PromptVersion
from rollouts.models import Rollout
from rollouts.plan import DEFAULT_GATES, DEFAULT_PLAN


def make_running_rollouts(*, count: int, candidate_events: int, even_split: bool = False) -> list[Rollout]:
    now = timezone.now()
    prompts = Prompt.objects.bulk_create(
        Prompt(name=f"bench.prompt-{i}", latest_version=2) for i in range(count)
    )
    versions = PromptVersion.objects.bulk_create(
        PromptVersion(
            prompt=prompt,
            version=number,
            template=f"v{number}: answer {{{{question}}}}",
            model="gpt-4o-mini",
            content_hash=f"{prompt.pk:032x}{number:032x}",
        )
        for prompt in prompts
        for number in (1, 2)
    )
    by_prompt = {(v.prompt_id, v.version): v for v in versions}
    Label.objects.bulk_create(
        Label(prompt=prompt, name=PRODUCTION, version=by_prompt[(prompt.pk, 1)]) for prompt in prompts
    )
    step_started = now - timedelta(minutes=3)
    rollouts = Rollout.objects.bulk_create(
        Rollout(
            prompt=prompt,
            baseline=by_prompt[(prompt.pk, 1)],
            candidate=by_prompt[(prompt.pk, 2)],
            plan=DEFAULT_PLAN.to_json(),
            gates=[gate.to_json() for gate in DEFAULT_GATES],
            state=Rollout.State.RUNNING,
            step_index=0,
            percent=DEFAULT_PLAN.steps[0].percent,
            salt=f"{prompt.name}:bench",
            started_at=step_started,
            step_started_at=step_started,
        )
        for prompt in prompts
    )
    _report_outcomes(rollouts, candidate_events, even_split, ts=now - timedelta(minutes=1))
    return rollouts


def _report_outcomes(rollouts: list[Rollout], candidate_events: int, even_split: bool, *, ts: object) -> None:
    """Reference traffic: 1% errors, lognormal latency (median 800 ms, sigma 0.5), a score;
    ``candidate_events`` for the candidate, and for the baseline as many as its share of the
    step's traffic (9 times as many at 10%), or with ``even_split`` as many as the candidate (the
    traffic check then pauses every rollout)."""
    rng = random.Random(7)
    stamp = ts.isoformat()  # type: ignore[attr-defined]
    events = []
    for rollout in rollouts:
        percent = float(rollout.percent)
        baseline_events = (
            candidate_events if even_split else round(candidate_events * (100 - percent) / percent)
        )
        for arm, version, count in (("baseline", 1, baseline_events), ("candidate", 2, candidate_events)):
            events += [
                {
                    "event_id": str(uuid.uuid4()),
                    "prompt": rollout.prompt.name,
                    "version": version,
                    "rollout_id": rollout.pk,
                    "arm": arm,
                    "latency_ms": rng.lognormvariate(6.685, 0.5),
                    "error": rng.random() < 0.01,
                    "cost_usd": 0.002,
                    "scores": {"helpfulness": min(1.0, max(0.0, rng.gauss(0.8, 0.15)))},
                    "ts": stamp,
                }
                for _ in range(count)
            ]
    for start in range(0, len(events), 1000):
        events_ingest(body=orjson.dumps({"events": events[start : start + 1000]}), now=time.time())
        if start % 10_000 == 0:
            outcome_minutes_flush()
    while outcome_minutes_flush().batches:
        pass
