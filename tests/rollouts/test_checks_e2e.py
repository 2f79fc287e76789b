"""Required checks and observe-only gates end to end: CI reports through the API, beat's tick run
by a real Celery worker of the test run, resolve through the fast path, webhooks received by a
local server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from core.cluster_metrics import ClusterCollector
from registry.models import Label
from rollouts.engine import Verdict
from rollouts.metrics import evaluations_record
from rollouts.models import Rollout, RolloutTransition
from rollouts.tasks import rollouts_tick
from rollouts.webhooks import webhook_create
from tests.factories import actor_for, make_key
from tests.rollouts.outcomes import ingest_client, report
from tests.serving.clients import fast_get

PLAN = [
    {"percent": 50, "min_duration_s": 0, "min_samples": 300},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
GATES = [{"metric": "cost_per_request", "max": 0.05}]


def reload(rollout_id: int) -> Rollout:
    return Rollout.objects.select_related("prompt", "baseline", "candidate").get(pk=rollout_id)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the worker"
        time.sleep(0.05)


def tick_until(rollout_id: int, condition: Callable[[Rollout], bool]) -> Rollout:
    """Beat's tick through Celery until ``condition`` holds of the rollout."""
    deadline = time.monotonic() + 30
    while not condition(reload(rollout_id)):
        assert time.monotonic() < deadline, f"rollout {rollout_id} is still {reload(rollout_id).state}"
        rollouts_tick.delay()
        time.sleep(0.3)
    return reload(rollout_id)


def served(key: str) -> set[tuple[str, int]]:
    answers = [fast_get(f"/api/v1/prompts/support.answer/resolve?unit=u{i}", key=key) for i in range(60)]
    return {(answer.json()["arm"], answer.json()["version"]) for answer in answers}


def create(client: Any, **body: Any) -> int:
    answer = client.post(
        "/api/v1/prompts/support.answer/rollouts", {"candidate_version": 2, **body}, format="json"
    )
    assert answer.status_code == 201, answer.json()
    return int(answer.json()["id"])


def check_report(client: Any, rollout_id: int, status: str, detail: str) -> Any:
    return client.post(
        f"/api/v1/rollouts/{rollout_id}/checks",
        {"name": "offline-eval", "status": status, "detail": detail, "url": "https://ci.example.com/runs/7"},
        format="json",
    )


@pytest.mark.django_db(transaction=True)
def test_a_required_check_holds_the_rollout_pending_on_production_until_ci_reports_pass(
    alice, admin_user, prompt, client_with_key, celery_worker, webhook_receiver
):
    webhook_create(actor=actor_for(admin_user), url=webhook_receiver.url, secret=webhook_receiver.secret)
    writer, ci, reader = (
        client_with_key(alice, "write"),
        client_with_key(alice, "checks"),
        make_key(alice, "read"),
    )
    rollout_id = create(writer, plan=PLAN, gates=GATES, required_checks=["offline-eval"])

    (requested,) = webhook_receiver.wait_for(1)
    assert requested.signature_valid and requested.json()["event"] == "rollout.checks_requested"
    assert requested.json()["report_path"] == f"/api/v1/rollouts/{rollout_id}/checks"
    for _ in range(3):
        before = reload(rollout_id).last_evaluated_at
        rollouts_tick.delay()
        wait_until(lambda before=before: reload(rollout_id).last_evaluated_at != before)
        assert reload(rollout_id).state == "pending"
        assert served(reader) == {("production", 1)}
    assert reload(rollout_id).reason == "waiting for required checks: offline-eval"

    assert check_report(ci, rollout_id, "pass", "helpfulness 0.84 vs 0.81 on 500 items").status_code == 200
    rollout = tick_until(rollout_id, lambda r: r.state == "running")

    assert rollout.percent == 50
    wait_until(lambda: served(reader) == {("baseline", 1), ("candidate", 2)})
    started = RolloutTransition.objects.get(rollout=rollout, event="started")
    assert started.actor_name == "alice", "the creator counts as the one who started it"
    events = [r.json()["event"] for r in webhook_receiver.wait_for(2)]
    assert events == ["rollout.checks_requested", "rollout.started"]


@pytest.mark.django_db(transaction=True)
def test_a_failing_check_aborts_the_rollout_and_the_webhook_names_it(
    alice, admin_user, prompt, client_with_key, celery_worker, webhook_receiver
):
    webhook_create(actor=actor_for(admin_user), url=webhook_receiver.url, secret=webhook_receiver.secret)
    writer, ci, reader = (
        client_with_key(alice, "write"),
        client_with_key(alice, "checks"),
        make_key(alice, "read"),
    )
    rollout_id = create(writer, plan=PLAN, gates=GATES, required_checks=["offline-eval"])

    answer = check_report(ci, rollout_id, "fail", "helpfulness 0.62 vs 0.81 on 500 items")

    assert answer.json()["state"] == "aborted"
    received = webhook_receiver.wait_for(2)
    aborted = received[-1].json()
    assert aborted["event"] == "rollout.aborted"
    assert "required check 'offline-eval' failed: helpfulness 0.62 vs 0.81 on 500 items" in aborted["text"]
    rollouts_tick.delay()
    time.sleep(1)
    assert reload(rollout_id).state == "aborted"
    assert served(reader) == {("production", 1)}


@pytest.mark.django_db(transaction=True)
def test_a_rollout_whose_checks_do_not_pass_in_time_is_aborted_by_the_tick(
    alice, prompt, client_with_key, celery_worker
):
    writer, reader = client_with_key(alice, "write"), make_key(alice, "read")
    rollout_id = create(writer, plan=PLAN, gates=GATES, required_checks=["offline-eval"], checks_timeout_s=1)
    time.sleep(1.1)

    rollout = tick_until(rollout_id, lambda r: r.state != "pending")

    assert rollout.state == "aborted"
    assert rollout.reason == "required checks not all passed within 1 s: still pending: offline-eval"
    assert served(reader) == {("production", 1)}
    late = client_with_key(alice, "checks")
    assert check_report(late, rollout_id, "pass", "too late").status_code == 409


@pytest.mark.django_db(transaction=True)
def test_a_failing_observe_only_gate_is_recorded_and_the_rollout_still_succeeds(
    alice, admin_user, prompt, client_with_key, celery_worker, webhook_receiver
):
    webhook_create(actor=actor_for(admin_user), url=webhook_receiver.url, secret=webhook_receiver.secret)
    writer, events = client_with_key(alice, "write"), ingest_client(alice)
    gates = [*GATES, {"metric": "error_rate", "max_increase_abs": 0.01, "on_fail": "observe"}]
    rollout_id = create(writer, plan=PLAN, gates=gates)
    rollout = reload(rollout_id)
    report(events, rollout, "baseline", 400, errors=4)
    report(events, rollout, "candidate", 400, errors=80)

    rollout = tick_until(rollout_id, lambda r: r.state != "running" or r.percent == 100)
    assert (rollout.state, rollout.percent) == ("running", 100)
    rollout = tick_until(rollout_id, lambda r: r.state != "running")

    assert rollout.state == "succeeded"
    assert Label.objects.get(prompt__name="support.answer", name="production").version.version == 2
    advanced = RolloutTransition.objects.get(rollout=rollout, event="advanced")
    verdicts = {v["metric"]: (v["verdict"], v["on_fail"]) for v in advanced.verdicts}
    assert verdicts["cost_per_request"] == ("pass", "rollback")
    assert verdicts["error_rate"] == ("fail", "observe")
    assert "observe only, no action: error_rate failed" in advanced.reason
    detail = writer.get(f"/api/v1/rollouts/{rollout_id}").json()
    (history_entry,) = [h for h in detail["history"] if h["event"] == "advanced"]
    assert {"metric": "error_rate", "verdict": "fail", "on_fail": "observe"}.items() <= history_entry[
        "verdicts"
    ][1].items()
    texts = [r.json()["text"] for r in webhook_receiver.wait_for(3)]
    assert any("observe only, no action: error_rate failed" in text for text in texts)
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(reverse("admin:rollouts_rollout_change", args=[rollout_id])).content.decode()
    assert "fail · observe only" in page


@pytest.mark.django_db
def test_the_tick_command_marks_observe_only_verdicts_and_reports_pending_checks(
    alice, prompt, client_with_key
):
    writer = client_with_key(alice, "write")
    gates = [{"metric": "error_rate", "max_increase_abs": 0.01, "on_fail": "observe"}]
    running = create(writer, plan=PLAN, gates=gates)
    output = StringIO()

    call_command("rollouts", "tick", stdout=output)
    Rollout.objects.filter(pk=running).update(state="succeeded")
    waiting = create(writer, plan=PLAN, required_checks=["offline-eval"])
    call_command("rollouts", "tick", stdout=output)

    lines = output.getvalue().splitlines()
    assert any(line.startswith("  verdicts: error_rate insufficient_data (observe only)") for line in lines)
    assert f"rollout {waiting}: checks wait — waiting for required checks: offline-eval" in lines


@pytest.mark.django_db
def test_observe_only_verdicts_are_counted_apart_in_the_metrics():
    def counts() -> dict[str, float]:
        (family,) = [f for f in ClusterCollector().collect() if f.name == "promptramp_gate_verdicts"]
        return {s.labels["verdict"]: s.value for s in family.samples if s.labels["metric"] == "error_rate"}

    before = counts()
    verdict = Verdict("error_rate", "fail", 0.01, 0.2, "", "ingest", "max_increase_abs", 0.01, "observe")
    evaluations_record(verdicts=[verdict, replace(verdict, on_fail="rollback")], seconds=0.01)

    after = counts()
    assert after["observe_fail"] == before.get("observe_fail", 0) + 1
    assert after["fail"] == before.get("fail", 0) + 1
