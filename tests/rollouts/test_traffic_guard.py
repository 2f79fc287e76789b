"""The traffic check end to end: `manage.py simulate --candidate-report-loss 0.3` through the real
resolve and events endpoints, exposures counted by the serving process, a real Celery worker
ticking the controller; at an exposed step, and at a shadow step whose shadow runs lose their
reports."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from outcomes.selectors import arm_stats
from outcomes.services import outcome_minutes_flush
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_create
from rollouts.tasks import rollouts_tick
from rollouts.traffic_model import ArmBehaviour
from rollouts.webhooks import message_text
from serving.exposures import exposure_counter
from tests.factories import actor_for, make_key, make_prompt

PLAN = [
    {"percent": 50, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
SHADOW_PLAN = [{"shadow": True, "percent": 50, "min_duration_s": 600, "min_samples": 200}, PLAN[1]]


def test_a_report_loss_drops_that_share_of_outcomes() -> None:
    rng = random.Random(5)
    behaviour = ArmBehaviour(report_loss=0.3)

    reported = sum(behaviour.reports(rng) for _ in range(10_000))

    assert abs(reported / 10_000 - 0.7) < 5 * (0.3 * 0.7 / 10_000) ** 0.5


def started_two_minutes_ago(rollout: Rollout) -> None:
    """A step's window starts at the first whole minute after it began: this one's holds now."""
    Rollout.objects.filter(pk=rollout.pk).update(step_started_at=timezone.now() - timedelta(minutes=2))


def simulate(live_server: Any, key: str, seed: int, **options: Any) -> None:
    """Drive simulate's traffic for 20 s. Event ids come from ``seed``, and ingest remembers the
    ids it saw for the whole test session: a test whose events must all count takes a seed of
    its own (above 100: the suite's other simulate runs use 0-13)."""
    call_command(
        "simulate",
        "support.answer",
        base_url=live_server.url,
        api_key=key,
        rate=200,
        duration=20,
        seed=seed,
        **options,
    )
    exposure_counter.flush()  # the live server's process: what its flushing thread would send within 1 s
    outcome_minutes_flush()


def rollout_started_two_minutes_ago(alice: Any, plan: Any) -> Rollout:
    make_prompt(alice, versions=2)
    rollout = rollout_create(
        actor=actor_for(alice), prompt_name="support.answer", candidate_version=2, plan=plan
    )
    started_two_minutes_ago(rollout)
    return rollout


def paused_by_the_traffic_check(rollout: Rollout) -> RolloutTransition:
    """The transition that paused ``rollout``: the traffic check failed, no other gate did."""
    transition = RolloutTransition.objects.get(rollout=rollout, to_state="paused")
    (traffic,) = [v for v in transition.verdicts if v["metric"] == "traffic"]
    assert (traffic["verdict"], traffic["on_fail"]) == ("fail", "pause")
    assert all(v["verdict"] != "fail" for v in transition.verdicts if v["metric"] != "traffic")
    return transition


def tick_until_evaluated(rollout: Rollout) -> Rollout:
    before = Rollout.objects.get(pk=rollout.pk).last_evaluated_at
    rollouts_tick.delay()
    deadline = time.monotonic() + 30
    while Rollout.objects.get(pk=rollout.pk).last_evaluated_at == before:
        assert time.monotonic() < deadline, "timed out waiting for the controller"
        time.sleep(0.05)
    return Rollout.objects.select_related("prompt").get(pk=rollout.pk)


@pytest.mark.django_db(transaction=True)
def test_a_candidate_losing_30_percent_of_its_reports_is_paused_by_the_traffic_check(
    live_server: Any, alice: Any, celery_worker: Any
) -> None:
    # Given a running rollout with the default gates and traffic check, fed by simulate with a
    # candidate whose outcomes are lost for 30% of its calls
    rollout = rollout_started_two_minutes_ago(alice, PLAN)
    simulate(live_server, make_key(alice, "read,ingest"), seed=101, candidate_report_loss=0.3)

    # When the controller ticks
    rollout = tick_until_evaluated(rollout)

    # Then the rollout is paused at its step by the traffic check, saying why
    assert (rollout.state, rollout.percent) == ("paused", 50), rollout.last_verdicts
    assert rollout.reason.startswith("paused at 50%: traffic failed")
    assert "reports" in rollout.reason
    transition = paused_by_the_traffic_check(rollout)
    assert "traffic fail" in message_text(rollout, transition)  # the webhook's text


@pytest.mark.django_db(transaction=True)
def test_the_same_traffic_without_report_loss_is_not_paused(
    live_server: Any, alice: Any, celery_worker: Any
) -> None:
    rollout = rollout_started_two_minutes_ago(alice, PLAN)
    simulate(live_server, make_key(alice, "read,ingest"), seed=102)

    rollout = tick_until_evaluated(rollout)

    assert rollout.state == "running"
    (traffic,) = [v for v in rollout.last_verdicts if v["metric"] == "traffic"]
    assert traffic["verdict"] != "fail"
    assert "outcomes per exposure" in traffic["detail"]


@pytest.mark.django_db(transaction=True)
def test_a_shadow_losing_30_percent_of_its_reports_is_paused_before_anyone_is_served_the_candidate(
    live_server: Any, alice: Any, celery_worker: Any
) -> None:
    # Given a rollout in a 50% shadow step, fed by simulate --shadow with a candidate whose shadow
    # runs are lost for 30% of the calls (the servers count each sampled answer as a shadow exposure)
    rollout = rollout_started_two_minutes_ago(alice, SHADOW_PLAN)
    simulate(live_server, make_key(alice, "read,ingest"), seed=103, shadow=True, candidate_report_loss=0.3)

    # When the controller ticks
    rollout = tick_until_evaluated(rollout)

    # Then the traffic check pauses it in its shadow step, naming the shadow's missing reports,
    # and nobody was ever served the candidate
    assert (rollout.state, rollout.step_index, rollout.percent) == ("paused", 0, 0), rollout.last_verdicts
    assert rollout.reason.startswith("paused at shadow 50%: traffic failed")
    assert "the shadow reports too few" in rollout.reason
    paused_by_the_traffic_check(rollout)
    arms = arm_stats(rollout_id=rollout.pk)
    assert arms["candidate"].samples == 0 and arms["shadow"].samples > 0


@pytest.mark.django_db(transaction=True)
def test_an_honest_shadow_is_not_paused(live_server: Any, alice: Any, celery_worker: Any) -> None:
    rollout = rollout_started_two_minutes_ago(alice, SHADOW_PLAN)
    simulate(live_server, make_key(alice, "read,ingest"), seed=104, shadow=True)

    rollout = tick_until_evaluated(rollout)

    assert (rollout.state, rollout.step_index) == ("running", 0)
    (traffic,) = [v for v in rollout.last_verdicts if v["metric"] == "traffic"]
    assert traffic["verdict"] == "pass", traffic["detail"]
    assert "shadow vs" in traffic["detail"]
