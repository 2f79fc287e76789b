"""Rollout services: creation, the manual state machine, and what every transition writes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from audit.models import AuditEntry
from core.errors import Forbidden, ValidationFailed
from core.redis_client import get_redis
from core.state_cache import generation_key
from registry.models import Label
from rollouts.errors import NoProduction, RolloutActive, RolloutStateError
from rollouts.models import Outbox, Rollout, RolloutTransition
from rollouts.services import (
    rollout_abort,
    rollout_create,
    rollout_pause,
    rollout_resume,
    rollout_rollback,
    rollout_start,
)
from rollouts.webhooks import webhook_create
from tests.factories import actor_for, make_prompt

PLAN = [
    {"percent": 10, "min_duration_s": 0, "min_samples": 10},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


def create(owner: Any, **kwargs: Any) -> Rollout:
    args: dict[str, Any] = {"prompt_name": "support.answer", "candidate_version": 2, "plan": PLAN}
    return rollout_create(actor=actor_for(owner), **(args | kwargs))


def production_version(prompt_name: str = "support.answer") -> int:
    return Label.objects.get(prompt__name=prompt_name, name="production").version.version


@pytest.mark.django_db
def test_create_uses_production_as_baseline_and_starts_at_the_first_step(alice, prompt):
    rollout = create(alice)
    assert (rollout.baseline.version, rollout.candidate.version) == (1, 2)
    assert rollout.state == "running"
    assert (rollout.step_index, rollout.percent) == (0, 10)
    assert rollout.salt == f"support.answer:{rollout.pk}"
    assert rollout.started_at == rollout.step_started_at is not None


@pytest.mark.django_db
def test_create_without_plan_or_gates_uses_the_defaults(alice, prompt):
    rollout = create(alice, plan=None, start=False)
    assert [step["percent"] for step in rollout.plan] == [10, 25, 50, 100]
    assert [gate["metric"] for gate in rollout.gates] == [
        "latency_p95_ms",
        "error_rate",
        "cost_per_request",
        "score:*",
    ]
    assert rollout.state == "pending" and rollout.percent == 0


@pytest.mark.django_db
def test_explicit_gates_replace_the_defaults(alice, prompt):
    gates = [{"metric": "error_rate", "max_increase_abs": 0.01, "min_samples": 50}]
    rollout = create(alice, gates=gates)
    assert rollout.gates == [
        {
            "metric": "error_rate",
            "source": "ingest",
            "max_increase_abs": 0.01,
            "min_samples": 50,
            "on_fail": "rollback",
        }
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"plan": [{"percent": 50, "min_duration_s": 0, "min_samples": 0}]}, "plan[0].percent"),
        (
            {"plan": [{"percent": 50, "min_duration_s": 0, "min_samples": 0}] * 2},
            "plan[1].percent",
        ),
        ({"gates": [{"metric": "latency_p42_ms", "max": 1}]}, "gates[0].metric"),
        ({"gates": [{"metric": "error_rate"}]}, "gates[0]"),
    ],
)
def test_invalid_plan_or_gate_is_refused_naming_the_field(alice, prompt, changes, field):
    with pytest.raises(ValidationFailed) as refused:
        create(alice, **changes)
    assert refused.value.details == {"field": field}
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_candidate_must_exist_and_differ_from_production(alice, prompt):
    with pytest.raises(ValidationFailed, match="no version 7"):
        create(alice, candidate_version=7)
    with pytest.raises(ValidationFailed, match="already production"):
        create(alice, candidate_version=1)
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_prompt_without_production_cannot_be_rolled_out(alice):
    make_prompt(alice, name="empty", versions=0)
    with pytest.raises(NoProduction):
        create(alice, prompt_name="empty", candidate_version=1)


@pytest.mark.django_db
def test_only_owners_create_rollouts(bob, prompt):
    with pytest.raises(Forbidden):
        create(bob)
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_a_second_active_rollout_of_a_prompt_is_refused(alice):
    make_prompt(alice, versions=3)
    create(alice, start=False)
    with pytest.raises(RolloutActive):
        create(alice, candidate_version=3)
    assert Rollout.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_yield_exactly_one_active_rollout(alice):
    make_prompt(alice, versions=3)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def attempt(version: int) -> None:
        try:
            barrier.wait()
            create(alice, candidate_version=version)
            outcomes.append("created")
        except RolloutActive:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(2 + i % 2,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 5 + ["created"]
    assert Rollout.objects.filter(state__in=Rollout.ACTIVE_STATES).count() == 1


@pytest.mark.django_db
def test_every_transition_writes_history_audit_outbox_and_announces_serving(
    alice, prompt, webhook_receiver, django_capture_on_commit_callbacks
):
    webhook_create(actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret="x" * 16)
    generation_before = int(get_redis().get(generation_key("serving")) or 0)
    # Announcements go out when the transaction commits (here: when the callbacks run).
    with django_capture_on_commit_callbacks(execute=True):
        rollout = create(alice, start=False)
        rollout_start(actor=actor_for(alice), rollout_id=rollout.pk, reason="go")
        rollout_pause(actor=actor_for(alice), rollout_id=rollout.pk, reason="lunch")
        rollout_resume(actor=actor_for(alice), rollout_id=rollout.pk)
        rollout_abort(actor=actor_for(alice), rollout_id=rollout.pk, reason="changed my mind")
    history = list(RolloutTransition.objects.filter(rollout=rollout).values_list("from_state", "to_state"))
    assert history == [
        ("pending", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "aborted"),
    ]
    actions = AuditEntry.objects.filter(object_type="rollout").order_by("id").values_list("action", flat=True)
    assert list(actions) == [
        "rollout.create",
        "rollout.started",
        "rollout.paused",
        "rollout.resumed",
        "rollout.aborted",
    ]
    events = list(Outbox.objects.order_by("id").values_list("event", flat=True))
    assert events == ["rollout.started", "rollout.paused", "rollout.resumed", "rollout.aborted"]
    assert int(get_redis().get(generation_key("serving")) or 0) >= generation_before + 5


@pytest.mark.django_db
def test_pause_keeps_the_split_and_resume_restarts_the_step(alice, prompt):
    rollout = create(alice)
    first_start = rollout.step_started_at
    paused = rollout_pause(actor=actor_for(alice), rollout_id=rollout.pk)
    assert (paused.state, paused.percent, paused.step_index) == ("paused", 10, 0)
    resumed = rollout_resume(actor=actor_for(alice), rollout_id=rollout.pk)
    assert resumed.state == "running" and resumed.percent == 10
    assert resumed.step_started_at > first_start


@pytest.mark.django_db
def test_rollback_returns_everyone_to_the_baseline(alice, prompt):
    rollout = create(alice)
    ended = rollout_rollback(actor=actor_for(alice), rollout_id=rollout.pk, reason="tone is off")
    assert (ended.state, ended.percent, ended.reason) == ("rolled_back", 0, "tone is off")
    assert ended.ended_at is not None
    assert production_version() == 1
    history = RolloutTransition.objects.get(rollout=rollout, to_state="rolled_back")
    assert (history.actor_name, history.percent) == ("alice", 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "state"),
    [
        (rollout_start, "running"),
        (rollout_resume, "running"),
        (rollout_pause, "pending"),
        (rollout_rollback, "pending"),
        (rollout_abort, "aborted"),
        (rollout_pause, "aborted"),
    ],
)
def test_an_action_the_state_does_not_allow_is_refused(alice, prompt, action, state):
    rollout = create(alice, start=state != "pending")
    if state == "aborted":
        rollout_abort(actor=actor_for(alice), rollout_id=rollout.pk)
    transitions = RolloutTransition.objects.count()
    with pytest.raises(RolloutStateError):
        action(actor=actor_for(alice), rollout_id=rollout.pk)
    assert RolloutTransition.objects.count() == transitions
    assert Rollout.objects.get(pk=rollout.pk).state == state


@pytest.mark.django_db
def test_only_owners_act_on_a_rollout(alice, bob, prompt):
    rollout = create(alice)
    with pytest.raises(Forbidden):
        rollout_pause(actor=actor_for(bob), rollout_id=rollout.pk)
    assert Rollout.objects.get(pk=rollout.pk).state == "running"


@pytest.mark.django_db
def test_after_a_rollout_ends_a_new_one_may_start(alice, prompt):
    first = create(alice)
    rollout_abort(actor=actor_for(alice), rollout_id=first.pk)
    second = create(alice)
    assert second.state == "running" and second.pk != first.pk
