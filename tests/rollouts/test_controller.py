"""The controller end to end: outcomes reported through the events API (or seen by a local
Langfuse), ticks run by a real Celery worker of the test run, decisions applied to PostgreSQL and
shown by the API and the admin as they were made."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from core.cluster_metrics import KEY as METRICS_KEY
from core.redis_client import get_redis
from core.state_cache import SERVING_STATE, changes_key
from outcomes.validation import TS_CLAMP_SECONDS
from registry.models import Label
from rollouts.admin.live_page import condition_rows
from rollouts.controller import rollout_evaluate, rollout_evaluate_many, step_window
from rollouts.engine import Action, SamplesPerArm
from rollouts.metrics import TRANSITIONS
from rollouts.models import Outbox, Rollout, RolloutTransition
from rollouts.services import rollout_create
from rollouts.tasks import rollouts_tick
from rollouts.webhooks import webhook_create
from tests.factories import actor_for, make_prompt
from tests.fakes.langfuse_server import FakeLangfuse
from tests.rollouts.outcomes import OBSERVE_TRAFFIC, ingest_client, report, report_late_scores

GATES = [{"metric": "error_rate", "max_increase_abs": 0.05}]


def step(percent: int, samples: int = 300, **extra: Any) -> dict[str, Any]:
    return {"percent": percent, "min_duration_s": 0, "min_samples": samples, **extra}


def start(owner: Any, plan: list[dict[str, Any]], gates: list[dict[str, Any]] = GATES) -> Rollout:
    return rollout_create(
        actor=actor_for(owner),
        prompt_name="support.answer",
        candidate_version=2,
        plan=plan,
        gates=gates,
        traffic=OBSERVE_TRAFFIC,
    )


def reload(rollout: Rollout) -> Rollout:
    return Rollout.objects.select_related("prompt", "baseline", "candidate").get(pk=rollout.pk)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the controller"
        time.sleep(0.05)


def tick(rollout: Rollout) -> Rollout:
    """One beat tick through Celery; returns the rollout once the worker has evaluated it."""
    before = reload(rollout).last_evaluated_at
    rollouts_tick.delay()
    wait_until(lambda: reload(rollout).last_evaluated_at != before)
    return reload(rollout)


def production() -> int:
    return Label.objects.get(prompt__name="support.answer", name="production").version.version


@pytest.mark.django_db(transaction=True)
def test_healthy_candidate_advances_step_by_step_and_becomes_production(
    alice, prompt, celery_worker, webhook_receiver
):
    webhook_create(
        actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret=webhook_receiver.secret
    )
    events = ingest_client(alice)
    rollout = start(alice, [step(10), step(50), step(100, samples=0)])
    percents = [rollout.percent]
    for _ in range(2):
        report(events, rollout, "baseline", 300)
        report(events, rollout, "candidate", 300)
        rollout = tick(rollout)
        percents.append(rollout.percent)
    assert percents == [10, 50, 100]
    assert production() == 1, "production moves only when the last step succeeds"
    rollout = tick(rollout)
    assert rollout.state == "succeeded" and rollout.ended_at is not None
    assert production() == 2
    history = list(RolloutTransition.objects.filter(rollout=rollout).order_by("id"))
    assert [(t.from_state, t.to_state, t.percent) for t in history] == [
        ("pending", "running", 10),
        ("running", "running", 50),
        ("running", "running", 100),
        ("running", "succeeded", 100),
    ]
    assert history[1].actor_name == "system"
    assert [v["verdict"] for v in history[1].verdicts if v["metric"] != "traffic"] == ["pass"]
    advance = AuditEntry.objects.filter(action="rollout.advanced").first()
    assert advance.data["verdicts"][0]["metric"] == "error_rate"
    moved = AuditEntry.objects.get(action="label.move", data__to_version=2)
    assert moved.actor_name == "system"
    received = webhook_receiver.wait_for(5)
    events = [r.json()["event"] for r in received]
    assert [event for event in events if event.startswith("rollout.")] == [
        "rollout.started",
        "rollout.advanced",
        "rollout.advanced",
        "rollout.succeeded",
    ]
    [label_moved] = [r.json() for r in received if r.json()["event"] == "label.moved"]
    assert (label_moved["to_version"], label_moved["actor"]) == (2, "system")
    assert all(r.signature_valid for r in received)


@pytest.mark.django_db(transaction=True)
def test_regressing_candidate_is_rolled_back_naming_the_gate(alice, prompt, celery_worker):
    events = ingest_client(alice)
    rollout = start(alice, [step(10), step(100, samples=0)])
    report(events, rollout, "baseline", 400, errors=4)
    report(events, rollout, "candidate", 400, errors=80)
    rollout = tick(rollout)
    assert (rollout.state, rollout.percent) == ("rolled_back", 0)
    assert rollout.reason.startswith("rolled back at 10%: error_rate failed")
    assert "20.00%" in rollout.reason and "1.00%" in rollout.reason
    assert production() == 1
    transition = RolloutTransition.objects.get(rollout=rollout, to_state="rolled_back")
    assert transition.verdicts[0]["verdict"] == "fail"
    assert AuditEntry.objects.get(action="rollout.rolled_back").data["verdicts"][0]["metric"] == "error_rate"


@pytest.mark.django_db(transaction=True)
def test_a_score_gate_rolls_back_a_candidate_whose_scores_arrive_only_as_late_scores(
    alice, prompt, celery_worker, client_with_key
):
    # given a rollout gated on helpfulness, and calls of both arms reported without scores
    events = ingest_client(alice)
    gate = {"metric": "score:helpfulness", "max_drop_abs": 0.05}
    rollout = start(alice, [step(10), step(100, samples=0)], gates=[gate])
    baseline_calls = report(events, rollout, "baseline", 400)
    candidate_calls = report(events, rollout, "candidate", 400)

    # when the controller ticks before any score arrived, it holds: nothing to judge yet
    rollout = tick(rollout)
    assert (rollout.state, rollout.percent) == ("running", 10)
    verdicts = {v["metric"]: v["verdict"] for v in rollout.last_verdicts}
    assert verdicts["score:helpfulness"] == "insufficient_data"

    # when the judge's scores arrive as late scores, the candidate's 0.3 lower
    spread = [((i % 10) - 4.5) / 40 for i in range(400)]
    report_late_scores(events, baseline_calls, "helpfulness", [0.8 + d for d in spread])
    report_late_scores(events, candidate_calls, "helpfulness", [0.5 + d for d in spread])
    rollout = tick(rollout)

    # then it is rolled back naming the score gate; the late scores were not requests
    assert (rollout.state, rollout.percent) == ("rolled_back", 0)
    assert rollout.reason.startswith("rolled back at 10%: score:helpfulness failed")
    assert production() == 1
    arms = client_with_key(alice, "read").get(f"/api/v1/rollouts/{rollout.pk}").json()["arms"]
    assert (arms["baseline"]["samples"], arms["candidate"]["samples"]) == (400, 400)
    assert arms["candidate"]["scores"]["helpfulness"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.django_db
def test_manual_approval_step_waits_for_promote(alice, prompt, client_with_key):
    writer, events = client_with_key(alice, "write"), ingest_client(alice)
    rollout = start(alice, [step(10, approval="manual"), step(100, samples=0)])
    report(events, rollout, "baseline", 300)
    report(events, rollout, "candidate", 300)
    decision = rollout_evaluate(rollout_id=rollout.pk)
    assert decision.action == "hold" and "manual approval" in decision.reason
    assert reload(rollout).percent == 10
    promoted = writer.post(f"/api/v1/rollouts/{rollout.pk}/promote", {"reason": "looks good"}, format="json")
    assert promoted.status_code == 200
    assert (promoted.json()["state"], promoted.json()["percent"]) == ("running", 100)
    last = RolloutTransition.objects.filter(rollout=rollout).last()
    assert (last.actor_name, last.from_state, last.to_state) == ("alice", "running", "running")
    assert last.reason.startswith("looks good (advanced from 10% to 100%")


@pytest.mark.django_db
def test_promote_passes_insufficient_data_and_the_last_step_makes_production(alice, prompt, client_with_key):
    writer = client_with_key(alice, "write")
    rollout = start(alice, [step(10, samples=10_000), step(100, samples=0, min_duration_s=3600)])
    first = writer.post(f"/api/v1/rollouts/{rollout.pk}/promote", {}, format="json").json()
    assert (first["state"], first["percent"]) == ("running", 100)
    assert "promoted past" in RolloutTransition.objects.filter(rollout=rollout).last().reason
    second = writer.post(f"/api/v1/rollouts/{rollout.pk}/promote", {}, format="json").json()
    assert second["state"] == "succeeded"
    assert production() == 2


@pytest.mark.django_db
def test_promote_refuses_to_pass_a_failing_gate(alice, prompt, client_with_key):
    writer, events = client_with_key(alice, "write"), ingest_client(alice)
    rollout = start(alice, [step(10), step(100, samples=0)])
    report(events, rollout, "baseline", 400, errors=4)
    report(events, rollout, "candidate", 400, errors=80)
    refused = writer.post(f"/api/v1/rollouts/{rollout.pk}/promote", {}, format="json")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "gate_failing" and "error_rate" in error["message"]
    assert error["details"]["verdicts"][0]["verdict"] == "fail"
    assert (reload(rollout).state, reload(rollout).percent) == ("running", 10)
    assert RolloutTransition.objects.filter(rollout=rollout).count() == 1


@pytest.mark.django_db
def test_paused_rollout_is_not_evaluated_and_resume_restarts_the_window(alice, prompt, client_with_key):
    writer, events = client_with_key(alice, "write"), ingest_client(alice)
    rollout = start(alice, [step(10), step(100, samples=0)])
    # Given a step that began four minutes ago and gathered enough outcomes three minutes ago
    # (windows are made of whole minutes),
    began = timezone.now() - timedelta(minutes=4)
    Rollout.objects.filter(pk=rollout.pk).update(started_at=began, step_started_at=began)
    writer.post(f"/api/v1/rollouts/{rollout.pk}/pause", {}, format="json")
    report(events, rollout, "baseline", 300, ts=began + timedelta(minutes=1))
    report(events, rollout, "candidate", 300, ts=began + timedelta(minutes=1))
    assert rollout_evaluate(rollout_id=rollout.pk) is None, "a paused rollout is not evaluated"
    # when it resumes, the step starts over: those outcomes are outside its window.
    writer.post(f"/api/v1/rollouts/{rollout.pk}/resume", {}, format="json")
    decision = rollout_evaluate(rollout_id=rollout.pk)
    assert decision.action == "hold"
    assert "candidate 0 of 300 samples" in decision.reason
    arms = writer.get(f"/api/v1/rollouts/{rollout.pk}").json()["arms"]
    assert arms["candidate"]["samples"] == 300, "the rollout's totals still count them"


@pytest.mark.django_db
def test_step_without_a_verdict_by_its_max_duration_pauses_naming_the_gates(alice, prompt):
    rollout = start(alice, [step(10, max_duration_s=60), step(100, samples=0)])
    later = reload(rollout).step_started_at + timedelta(seconds=61)
    decision = rollout_evaluate(rollout_id=rollout.pk, now=later)
    assert decision.action == "pause"
    paused = reload(rollout)
    assert (paused.state, paused.percent) == ("paused", 10)
    assert "error_rate" in paused.reason and "insufficient_data" in paused.reason


@pytest.mark.django_db
def test_one_evaluation_of_several_rollouts_records_each_transition_in_full(
    alice, django_capture_on_commit_callbacks
):
    admin = actor_for(alice, admin=True)
    every = webhook_create(actor=admin, url="http://127.0.0.1:9/every", secret="x" * 16)
    pauses = webhook_create(
        actor=admin, url="http://127.0.0.1:9/p", secret="x" * 16, events=["rollout.paused"]
    )
    webhook_create(actor=admin, url="http://127.0.0.1:9/a", secret="x" * 16, events=["rollout.advanced"])
    rollouts = {}
    for name, plan in [
        ("one", [step(10, max_duration_s=60), step(100, samples=0)]),
        ("two", [step(10), step(100, samples=0)]),  # no max duration: holds for want of samples
        ("three", [step(20, max_duration_s=60), step(100, samples=0)]),
    ]:
        make_prompt(alice, name=name, versions=2)
        rollouts[name] = rollout_create(
            actor=actor_for(alice), prompt_name=name, candidate_version=2, plan=plan, traffic=OBSERVE_TRAFFIC
        )
    later = max(reload(r).step_started_at for r in rollouts.values()) + timedelta(seconds=61)
    redis, counter = get_redis(), TRANSITIONS.by("paused", "controller")[0]
    paused_before = float(redis.hget(METRICS_KEY, counter) or 0)
    outbox_before, audit_before = Outbox.objects.count(), AuditEntry.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        decisions = rollout_evaluate_many(rollout_ids=[r.pk for r in rollouts.values()], now=later)

    assert {name: decisions[r.pk].action for name, r in rollouts.items()} == {
        "one": "pause",
        "two": "hold",
        "three": "pause",
    }
    assert (reload(rollouts["two"]).state, reload(rollouts["two"]).last_evaluated_at) == ("running", later)
    assert not RolloutTransition.objects.filter(rollout=rollouts["two"], event="paused").exists()
    for name, percent in [("one", 10), ("three", 20)]:
        rollout = reload(rollouts[name])
        assert (rollout.state, rollout.percent, rollout.last_evaluated_at) == ("paused", percent, later)
        assert "insufficient_data" in rollout.reason
        [transition] = RolloutTransition.objects.filter(rollout=rollout, event="paused")
        assert (transition.at, transition.from_state, transition.to_state) == (later, "running", "paused")
        assert (transition.percent, transition.reason, transition.actor_name) == (
            percent,
            rollout.reason,
            "system",
        )
        assert transition.verdicts == rollout.last_verdicts != []
        [entry] = AuditEntry.objects.filter(action="rollout.paused", object_id=str(rollout.pk))
        assert (entry.prompt_name, entry.via, entry.reason) == (name, "controller", rollout.reason)
        assert entry.data == {
            "from_state": "running",
            "to_state": "paused",
            "step_index": 0,
            "percent": percent,
            "verdicts": transition.verdicts,
        }
        messages = Outbox.objects.filter(rollout=rollout, event="rollout.paused").order_by("id")
        assert [m.webhook_id for m in messages] == [every.pk, pauses.pk]
        for message in messages:
            body = json.loads(message.body)
            assert (message.next_attempt_at, body["event"]) == (later, "rollout.paused")
            assert (body["rollout"]["id"], body["transition"]["percent"]) == (rollout.pk, percent)
    assert Outbox.objects.count() - outbox_before == 4
    assert AuditEntry.objects.count() - audit_before == 2
    assert float(redis.hget(METRICS_KEY, counter)) - paused_before == 2
    newest = redis.zrange(changes_key(SERVING_STATE), -1, -1)[0].decode()
    assert set(newest.partition(" ")[2].split("\n")) == {"one", "three"}, "one announcement names both"


@pytest.mark.django_db
def test_evaluating_twice_on_the_same_inputs_changes_nothing_the_second_time(alice, prompt):
    webhook_create(actor=actor_for(alice, admin=True), url="http://127.0.0.1:9/", secret="x" * 16)
    events = ingest_client(alice)
    rollout = start(alice, [step(10), step(50), step(100, samples=0)])
    report(events, rollout, "baseline", 300)
    report(events, rollout, "candidate", 300)
    now = reload(rollout).step_started_at + timedelta(minutes=2)
    assert rollout_evaluate(rollout_id=rollout.pk, now=now).action == "advance"

    def snapshot() -> tuple[Any, ...]:
        current = reload(rollout)
        return (
            current.state,
            current.step_index,
            current.percent,
            current.step_started_at,
            RolloutTransition.objects.count(),
            AuditEntry.objects.count(),
            Outbox.objects.count(),
        )

    before = snapshot()
    assert rollout_evaluate(rollout_id=rollout.pk, now=now).action == "hold"
    assert snapshot() == before


@pytest.mark.django_db
def test_detail_shows_arms_verdicts_and_history(alice, prompt, client_with_key):
    reader, events = client_with_key(alice, "read"), ingest_client(alice)
    rollout = start(alice, [step(10), step(100, samples=0)])
    report(events, rollout, "baseline", 50, errors=1, latency_ms=700)
    report(events, rollout, "candidate", 40, errors=2, latency_ms=900)
    rollout_evaluate(rollout_id=rollout.pk)
    body = reader.get(f"/api/v1/rollouts/{rollout.pk}").json()
    baseline, candidate = body["arms"]["baseline"], body["arms"]["candidate"]
    assert (baseline["samples"], baseline["errors"], candidate["samples"], candidate["errors"]) == (
        50,
        1,
        40,
        2,
    )
    assert candidate["error_rate"] == pytest.approx(0.05)
    assert candidate["latency_p50_ms"] > baseline["latency_p50_ms"]
    assert candidate["cost_per_request"] == pytest.approx(0.002)
    assert set(baseline) >= {"latency_p95_ms", "latency_p99_ms", "scores"}
    assert [(v["metric"], v["verdict"]) for v in body["verdicts"]] == [
        ("error_rate", "insufficient_data"),
        ("traffic", "fail"),  # 40 of 90 outcomes at 10%: listed with the gates, and only observed here
    ]
    assert body["verdicts"][1]["on_fail"] == "observe"
    samples = next(c for c in body["conditions"] if c["name"] == "samples")
    assert samples == {"name": "samples", "met": False, "baseline": 50, "candidate": 40, "min_samples": 300}
    assert body["history"][0] | {"at": None} == {
        "at": None,
        "event": "started",
        "from_state": "pending",
        "to_state": "running",
        "step_index": 0,
        "percent": 10,
        "shadow_percent": None,
        "actor": "alice",
        "reason": "",
        "verdicts": [],
        "conditions": [],
    }
    assert reader.get("/api/v1/rollouts/999999").status_code == 404


LANGFUSE_GATES = [{"metric": "error_rate", "source": "langfuse", "max_increase_abs": 0.05}]


def generations(langfuse: FakeLangfuse, rollout: Rollout, version: int, count: int) -> None:
    """``count`` generations of one version in the first whole minute of the rollout's step."""
    minute = rollout.step_started_at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for i in range(count):
        langfuse.add_generation(
            id=f"v{version}-{i}",
            trace_id=f"v{version}-t{i}",
            prompt="support.answer",
            version=version,
            start=minute + timedelta(milliseconds=100 * i),
        )


@pytest.mark.django_db
def test_a_rollout_gated_only_on_langfuse_advances_and_the_page_and_api_show_what_it_checked(
    alice, prompt, client_with_key, langfuse
):
    # Given a rollout gated on Langfuse only, whose calls Langfuse saw and promptramp did not
    rollout = start(alice, [step(10, samples=200), step(100, samples=0)], gates=LANGFUSE_GATES)
    generations(langfuse, rollout, 1, 300)
    generations(langfuse, rollout, 2, 250)

    # When the controller evaluates it
    decision = rollout_evaluate(rollout_id=rollout.pk)

    # Then it advanced on Langfuse's samples of each arm
    assert decision.action == Action.ADVANCE
    assert decision.conditions.samples == SamplesPerArm(baseline=300, candidate=250, min_samples=200)
    verdict, traffic = decision.verdicts
    assert (verdict.metric, verdict.source, verdict.verdict) == ("error_rate", "langfuse", "pass")
    assert (traffic.metric, traffic.source) == ("traffic", "ingest")
    # And the API shows what that decision checked, in its history and as the latest conditions
    body = client_with_key(alice, "read").get(f"/api/v1/rollouts/{rollout.pk}").json()
    advanced = body["history"][-1]
    assert (advanced["event"], advanced["percent"]) == ("advanced", 100)
    assert advanced["conditions"] == body["conditions"] == decision.conditions.to_json()
    assert advanced["verdicts"] == body["verdicts"] == [v.to_json() for v in decision.verdicts]
    assert body["arms"]["candidate"]["samples"] == 0, "no outcome was reported to promptramp"
    # And so does the admin page, in the same words as the decision's numbers
    admin = Client()
    admin.force_login(alice)
    page = admin.get(reverse("admin:rollouts_rollout_change", args=[rollout.pk]))
    shown = next(entry for entry in page.context["live"].history if entry.event == "advanced")
    assert shown.conditions == condition_rows(decision.conditions)
    assert {c.name: c.detail for c in shown.conditions}["samples per arm"] == (
        "baseline 300 of 200 · candidate 250 of 200"
    )
    assert all(c.met for c in shown.conditions)
    assert "baseline 300 of 200 · candidate 250 of 200" in page.content.decode()


def test_a_step_window_starts_at_its_first_whole_minute_and_reaches_as_far_ahead_as_ingest_places_events():
    now = datetime(2026, 11, 22, 18, 0, 30, tzinfo=UTC)

    since, until = step_window(now - timedelta(minutes=3), now)

    assert since == datetime(2026, 11, 22, 17, 58, tzinfo=UTC)
    assert until == now + timedelta(seconds=TS_CLAMP_SECONDS)
