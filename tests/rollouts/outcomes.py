"""Reporting outcomes the way applications do: `POST /api/v1/events` with an ingest key, then
the flush that beat runs every few seconds, so the rollout's aggregates hold them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from rest_framework.test import APIClient

from outcomes.services import outcome_minutes_flush
from rollouts.models import Rollout
from tests.factories import make_key


def ingest_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(user, 'ingest')}")
    return client


def report(
    client: APIClient,
    rollout: Rollout,
    arm: str,
    count: int,
    *,
    errors: int = 0,
    latency_ms: float = 800.0,
    cost_usd: float = 0.002,
    ts: datetime | None = None,
    shadow_sample: bool = False,
) -> list[dict[str, Any]]:
    """``count`` requests of one arm of a rollout (``shadow``: shadow runs of the candidate), the
    first ``errors`` of them failed, stamped ``ts`` (by default in the first whole minute of the
    rollout's current step); ``shadow_sample``: baseline requests of units in the shadow sample.
    Returns the events sent."""
    version = rollout.baseline.version if arm == "baseline" else rollout.candidate.version
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "prompt": rollout.prompt.name,
            "version": version,
            "rollout_id": rollout.pk,
            "arm": arm,
            "latency_ms": latency_ms * (1 + (i % 10) / 20),
            "error": i < errors,
            "cost_usd": cost_usd,
            "ts": (ts or rollout.step_started_at + timedelta(minutes=1)).isoformat(),
            **({"shadow_sample": True} if shadow_sample else {}),
        }
        for i in range(count)
    ]
    for start in range(0, count, 1000):
        response = client.post("/api/v1/events", {"events": events[start : start + 1000]}, format="json")
        assert response.status_code == 202, response.content
    outcome_minutes_flush()
    return events


def report_late_scores(
    client: APIClient, calls: list[dict[str, Any]], name: str, values: list[float]
) -> None:
    """A late score ``name`` for each call (as an LLM judge sends them after the calls)."""
    events = [
        {"event_id": str(uuid.uuid4()), "of_event": call["event_id"], "scores": {name: value}}
        for call, value in zip(calls, values, strict=True)
    ]
    for start in range(0, len(events), 1000):
        response = client.post("/api/v1/events", {"events": events[start : start + 1000]}, format="json")
        assert response.status_code == 202, response.content
        assert response.json()["unmatched"] == 0
    outcome_minutes_flush()


# The tests that report to each arm the counts they need, whatever the rollout's split, create
# their rollouts with this: the traffic check only observes there (its own tests are in
# test_traffic_check.py), and takes no share of the rollout's false-action budget.
OBSERVE_TRAFFIC = {"on_fail": "observe"}
