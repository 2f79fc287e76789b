"""The shadow step end to end: a real Celery worker evaluates it, its gates compare the shadow
runs with the baseline outcomes of the same units, and nobody is ever served the candidate."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone

from outcomes.selectors import arm_stats
from outcomes.services import outcome_minutes_flush
from rollouts.models import Rollout
from rollouts.services import rollout_create
from tests.factories import actor_for, make_key
from tests.rollouts.outcomes import ingest_client, report
from tests.rollouts.test_controller import production, reload, tick, wait_until
from tests.serving.clients import fast_get

GATES = [{"metric": "error_rate", "max_increase_abs": 0.05}]
SHADOW_PLAN = [
    {"shadow": True, "percent": 50, "min_duration_s": 0, "min_samples": 100},
    {"percent": 10, "min_duration_s": 0, "min_samples": 300},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


def start(owner: Any, plan: list[dict[str, Any]] = SHADOW_PLAN) -> Rollout:
    return rollout_create(
        actor=actor_for(owner), prompt_name="support.answer", candidate_version=2, plan=plan, gates=GATES
    )


@pytest.mark.django_db(transaction=True)
def test_a_healthy_shadow_advances_to_the_first_exposed_step(alice, prompt, celery_worker):
    events = ingest_client(alice)
    rollout = start(alice)
    assert (rollout.percent, rollout.step_index) == (0, 0)

    report(events, rollout, "shadow", 400)
    report(events, rollout, "baseline", 400, shadow_sample=True)
    rollout = tick(rollout)

    assert (rollout.state, rollout.step_index, rollout.percent) == ("running", 1, 10)
    advanced = rollout.transitions.get(event="advanced")
    assert advanced.reason.startswith("advanced from shadow 50% to 10%: every gate passed")
    verdict, traffic = advanced.verdicts
    assert verdict["metric"] == "error_rate" and verdict["verdict"] == "pass"
    # events alone, no exposure counts: the shadow's reports per exposure cannot be checked
    assert traffic["metric"] == "traffic" and traffic["verdict"] == "insufficient_data"
    assert traffic["detail"] == (
        "share not checked in a shadow step (SDKs cap their shadow runs); "
        "outcomes per exposure not checked (no exposure counts)"
    )


@pytest.mark.django_db(transaction=True)
def test_baseline_outcomes_outside_the_sample_do_not_feed_a_shadow_steps_gates(alice, prompt, celery_worker):
    events = ingest_client(alice)
    rollout = start(alice)

    report(events, rollout, "shadow", 400)
    report(events, rollout, "baseline", 400)  # not marked: units outside the shadow sample
    rollout = tick(rollout)

    assert (rollout.state, rollout.step_index) == ("running", 0)
    samples = next(c for c in rollout.last_conditions if c["name"] == "samples")
    assert (samples["baseline"], samples["candidate"]) == (0, 400)


class AnswerWatch:
    """Resolves units over and over, through a real HTTP server (Django's view) and through the
    WSGI fast path, keeping every answer."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.answers: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        path = "/api/v1/prompts/support.answer/resolve"
        n = 0
        while not self.stop.is_set():
            unit = f"watch-{n % 300}"
            over_http = session.get(f"{self.url}{path}", params={"unit": unit}, timeout=5)
            fast = fast_get(f"{path}?unit={unit}", key=self.key)
            assert over_http.status_code == fast.status_code == 200
            self.answers += [over_http.json(), fast.json()]
            n += 1


@pytest.mark.django_db(transaction=True)
def test_a_regressing_shadow_rolls_back_and_no_answer_ever_served_the_candidate(
    alice, prompt, celery_worker, live_server
):
    key = make_key(alice, "read,ingest")
    rollout = start(alice, [{**SHADOW_PLAN[0], "min_samples": 30}, *SHADOW_PLAN[1:]])
    # Given its step began two minutes ago: a step's window starts at the first whole minute after
    # it began, and simulate stamps outcomes now
    Rollout.objects.filter(pk=rollout.pk).update(step_started_at=timezone.now() - timedelta(minutes=2))
    watch = AnswerWatch(live_server.url, key)
    watch.thread.start()
    try:
        for seed in range(10):  # the shadow fails every run; simulate runs it for the sample's units
            call_command(
                "simulate",
                "support.answer",
                base_url=live_server.url,
                api_key=key,
                rate=100,
                duration=2,
                seed=seed,
                shadow=True,
                candidate_error_rate=1.0,
                baseline_error_rate=0.0,
            )
            outcome_minutes_flush()
            if tick(rollout).state != Rollout.State.RUNNING:
                break
        watched = len(watch.answers)
        wait_until(lambda: len(watch.answers) > watched + 20)  # answers after the rollback too
    finally:
        watch.stop.set()
        watch.thread.join(timeout=10)

    rollout = reload(rollout)
    assert rollout.reason.startswith("rolled back at shadow 50%: error_rate failed")
    assert production() == 1
    assert len(watch.answers) > 100
    assert all(answer["version"] == 1 for answer in watch.answers)
    assert {answer["arm"] for answer in watch.answers} <= {"baseline", "production"}
    assert any("shadow" in answer for answer in watch.answers)
    arms = arm_stats(rollout_id=rollout.pk)
    assert arms["candidate"].samples == 0  # simulate reports each answer's arm: none was candidate
    assert arms["shadow"].samples >= 30 and arms["shadow"].errors == arms["shadow"].samples
    assert arms["shadow_baseline"].samples == arms["shadow"].samples
    assert arms["baseline"].samples > 0 and arms["shadow_baseline"].errors == 0
