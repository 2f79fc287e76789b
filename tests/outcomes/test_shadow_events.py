"""Outcomes of a shadow step: shadow runs (arm ``shadow``, the candidate's version) and the
baseline outcomes of the units in the shadow sample (``shadow_sample``), each its own series."""

from __future__ import annotations

import pytest

from outcomes.selectors import arm_stats
from outcomes.services import outcome_minutes_flush
from tests.outcomes.conftest import event, post_events

pytestmark = pytest.mark.django_db


def test_shadow_runs_and_the_samples_baseline_are_counted_apart_from_the_baseline(setup, ingest_client):
    events = [event(setup.rollout, arm="shadow", version=2, latency_ms=900) for _ in range(3)]
    events += [event(setup.rollout, arm="baseline", shadow_sample=True) for _ in range(2)]
    events += [
        event(setup.rollout, arm="baseline", shadow_sample=False),
        event(setup.rollout, arm="baseline"),
    ]

    response = post_events(ingest_client, events)
    outcome_minutes_flush()

    assert response.status_code == 202 and response.json() == {"accepted": 7, "duplicates": 0, "unmatched": 0}
    stats = arm_stats(rollout_id=setup.rollout.pk)
    assert stats["shadow"].samples == 3 and stats["shadow"].latency.total == pytest.approx(2700)
    assert stats["shadow_baseline"].samples == 2
    assert stats["baseline"].samples == 2 and stats["candidate"].samples == 0


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"arm": "shadow", "version": 1}, "version", "the shadow (the candidate) of rollout"),
        ({"arm": "shadow", "rollout_id": None}, "arm", 'without a rollout_id, arm must be "production"'),
        (
            {"arm": "candidate", "version": 2, "shadow_sample": True},
            "shadow_sample",
            'only for arm "baseline"',
        ),
        ({"arm": "baseline", "shadow_sample": "yes"}, "shadow_sample", "must be true or false"),
        ({"arm": "shadow_baseline"}, "arm", '"baseline", "candidate", "shadow" or "override"'),
    ],
)
def test_shadow_events_that_do_not_fit_the_rollout_are_refused_naming_the_field(
    setup, ingest_client, fields, field, reason
):
    bad = event(setup.rollout, arm="baseline")
    bad.update(fields)

    response = post_events(ingest_client, [event(setup.rollout), bad])

    assert response.status_code == 400
    (detail,) = response.json()["error"]["details"]
    assert detail["index"] == 1 and detail["field"] == field and reason in detail["reason"]
