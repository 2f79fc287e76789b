"""Outcomes of callers an override served (arm ``override``): accepted and stored, shown apart
in the rollout's answer, and never in a gate's statistics, whatever they say."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from outcomes.models import OutcomeMinute
from outcomes.services import outcome_minutes_flush
from rollouts.models import Rollout
from tests.factories import make_key
from tests.rollouts.outcomes import ingest_client, report
from tests.rollouts.test_controller import reload, start, step, tick


def override_events(rollout: Rollout | None, version: int, count: int, **fields: Any) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "prompt": "support.answer",
            "version": version,
            "rollout_id": rollout.pk if rollout else None,
            "arm": "override",
            "latency_ms": 9000.0,
            "error": True,
            "cost_usd": 0.9,
            **({"ts": (rollout.step_started_at + timedelta(minutes=1)).isoformat()} if rollout else {}),
            **fields,
        }
        for _ in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_terrible_override_outcomes_neither_roll_back_nor_change_the_candidate(alice, prompt, celery_worker):
    events = ingest_client(alice)
    rollout = start(alice, [step(10), step(100, samples=0)])
    report(events, rollout, "baseline", 300)
    report(events, rollout, "candidate", 300)
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(alice, 'read')}")
    before = reader.get(f"/api/v1/rollouts/{rollout.pk}").json()["arms"]

    # Every override outcome failed, slowly and expensively, on the candidate's version too.
    for version in (1, 2):
        answer = events.post(
            "/api/v1/events", {"events": override_events(rollout, version, 300)}, format="json"
        )
        assert answer.status_code == 202, answer.json()
    outcome_minutes_flush()
    rollout = tick(rollout)

    assert (rollout.state, rollout.percent) == ("running", 100)
    detail = reader.get(f"/api/v1/rollouts/{rollout.pk}").json()
    assert detail["arms"] == before
    assert detail["override_outcomes"]["samples"] == 600
    assert detail["override_outcomes"]["errors"] == 600
    stored = OutcomeMinute.objects.filter(rollout=rollout, arm="override")
    assert sorted(stored.values_list("version__version", flat=True)) == [1, 2]
    browser = Client()
    browser.force_login(alice)
    page = browser.get(reverse("admin:rollouts_rollout_change", args=[rollout.pk])).content.decode()
    assert "Callers an override served reported 600 requests, 600 errors: shown apart, in no gate." in page


@pytest.mark.django_db
def test_override_outcomes_without_a_rollout_are_stored_apart_from_production(alice, prompt):
    events = ingest_client(alice)

    answer = events.post("/api/v1/events", {"events": override_events(None, 2, 3)}, format="json")
    outcome_minutes_flush()

    assert answer.status_code == 202, answer.json()
    row = OutcomeMinute.objects.get()
    assert (row.arm, row.rollout_id, row.version.version, row.samples) == ("override", None, 2, 3)


@pytest.mark.django_db
def test_override_outcomes_pointing_at_nothing_are_refused(alice, prompt):
    events = ingest_client(alice)
    rollout = start(alice, [step(10), step(100, samples=0)])
    bad = [
        *override_events(rollout, 7, 1),  # no version 7
        *override_events(None, 9, 1),
        *override_events(rollout, 1, 1, rollout_id=rollout.pk + 1000),
        *override_events(rollout, 1, 1, arm="shadowy"),
    ]

    answer = events.post("/api/v1/events", {"events": bad}, format="json")

    assert answer.status_code == 400
    problems = {(p["index"], p["field"]) for p in answer.json()["error"]["details"]}
    assert problems == {(0, "version"), (1, "version"), (2, "rollout_id"), (3, "arm")}
    assert not OutcomeMinute.objects.exists()
    assert reload(rollout).state == "running"
