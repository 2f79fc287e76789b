"""The rollouts list and the live page of a rollout: plan and current step, what the step waits
for, per-arm charts, verdicts and history, the part that refreshes itself, and which actions
it offers."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from rollouts.admin.live_page import condition_rows
from rollouts.controller import rollout_evaluate
from rollouts.engine import Approval, GatesPassing, SamplesPerArm, StepConditions, TimeOnStep
from rollouts.models import Rollout
from rollouts.services import rollout_create, rollout_pause
from tests.factories import actor_for, make_prompt
from tests.rollouts.outcomes import OBSERVE_TRAFFIC, ingest_client, report

pytestmark = pytest.mark.django_db

PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 50, "min_duration_s": 600, "min_samples": 200, "approval": "manual"},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
GATES = [
    {"metric": "error_rate", "max_increase_abs": 0.01},
    {"metric": "cost_per_request", "max": 0.01},
]


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def start(owner, **kwargs) -> Rollout:  # type: ignore[no-untyped-def]
    args = {
        "prompt_name": "support.answer",
        "candidate_version": 2,
        "plan": PLAN,
        "gates": GATES,
        "traffic": OBSERVE_TRAFFIC,
    }
    return rollout_create(actor=actor_for(owner), **(args | kwargs))


def live_url(rollout: Rollout) -> str:
    return reverse("admin:rollouts_rollout_change", args=[rollout.pk])


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_list_shows_each_rollout_and_filters_by_state_and_prompt(alice):
    make_prompt(alice, versions=2)
    make_prompt(alice, name="billing.reply", versions=2)
    running = start(alice)
    pending = start(alice, prompt_name="billing.reply", start=False)
    client = logged_in(alice)
    url = reverse("admin:rollouts_rollout_changelist")

    everything = client.get(url)
    by_state = client.get(url, {"state__exact": "pending"})
    by_prompt = client.get(url, {"prompt": "support.answer"})

    rows = text_of(everything.content.decode())
    assert (
        f"support.answer #{running.pk} v1 → v2 running 1 of 3 · 10% {running.started_at:%Y-%m-%d %H:%M:%S} —"
        in rows
    )
    assert f"billing.reply #{pending.pk} v1 → v2 pending 1 of 3 · 0% — —" in rows
    assert [r.pk for r in by_state.context["cl"].result_list] == [pending.pk]
    assert [r.pk for r in by_prompt.context["cl"].result_list] == [running.pk]


def test_the_live_page_shows_the_plan_with_the_current_step_and_what_it_waits_for(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    rollout_evaluate(rollout_id=rollout.pk)

    response = logged_in(alice).get(live_url(rollout))

    assert response.status_code == 200
    live = response.context["live"]
    assert [row.status for row in live.plan] == ["current", "next", ""]
    assert [c.name for c in live.progress.conditions if not c.met] == ["time", "samples per arm", "gates"]
    html = response.content.decode()
    assert 'aria-current="step"' in html
    assert "baseline 0 of 200 · candidate 0 of 200" in html
    assert "Waiting for time, samples per arm, gates (as of" in html
    assert "No outcomes reported yet." in html


def test_a_step_the_controller_has_not_evaluated_yet_says_so(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)

    live = logged_in(alice).get(live_url(rollout)).context["live"]

    assert live.progress.conditions == ()
    assert live.progress.summary.startswith("Not evaluated on this step yet")


def test_the_live_page_charts_each_arm_and_shows_the_latest_verdicts(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    began = timezone.now() - timedelta(minutes=4)
    Rollout.objects.filter(pk=rollout.pk).update(started_at=began, step_started_at=began)
    rollout.refresh_from_db()
    events = ingest_client(alice)
    for minute in (1, 2, 3):
        report(events, rollout, "baseline", 90, errors=1, ts=began + timedelta(minutes=minute))
        report(events, rollout, "candidate", 10, latency_ms=900, ts=began + timedelta(minutes=minute))
    rollout_evaluate(rollout_id=rollout.pk)

    response = logged_in(alice).get(live_url(rollout))

    live = response.context["live"]
    assert [chart.metric for chart in live.charts] == ["requests", "error_rate", "cost_per_request"]
    requests = live.charts[0]
    assert {line.arm: line.latest for line in requests.lines} == {"baseline": "90", "candidate": "10"}
    assert all(line.path.startswith("M") and line.path.count("L") >= 2 for line in requests.lines)
    assert [v.metric for v in live.verdicts] == ["error_rate", "cost_per_request", "traffic"]
    assert live.verdicts[1].candidate == "$0.0020" and live.verdicts[1].rule == "at most $0.0100"
    html = response.content.decode()
    assert html.count('class="pr-line pr-arm-candidate"') == 3
    assert "baseline 270 of 200 · candidate 30 of 200" in html
    assert [(row.arm, row.requests) for row in live.arms] == [("baseline", "270"), ("candidate", "30")]


def test_the_history_lists_every_transition_with_actor_and_reason_newest_first(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice, reason="ship it")
    rollout_pause(actor=actor_for(alice), rollout_id=rollout.pk, reason="looks odd")

    response = logged_in(alice).get(live_url(rollout))

    history = response.context["live"].history
    assert [(h.event, h.from_state, h.to_state, h.percent, h.actor, h.reason) for h in history] == [
        ("paused", "running", "paused", 10, "alice", "looks odd"),
        ("started", "pending", "running", 10, "alice", "ship it"),
    ]
    assert "Why it is paused:</strong> looks odd" in response.content.decode()


@pytest.mark.parametrize(
    ("state", "actions"),
    [
        ("pending", ["start", "abort"]),
        ("running", ["pause", "promote", "rollback", "abort"]),
        ("paused", ["resume", "promote", "rollback", "abort"]),
        ("rolled_back", []),
    ],
)
def test_the_page_offers_the_actions_the_state_allows(alice, state, actions):
    make_prompt(alice, versions=2)
    rollout = start(alice, start=False)
    Rollout.objects.filter(pk=rollout.pk).update(state=state, step_started_at=timezone.now())

    response = logged_in(alice).get(live_url(rollout))

    assert [action["name"] for action in response.context["actions"]] == actions
    html = response.content.decode()
    for name in actions:
        assert f'action="/admin/rollouts/rollout/{rollout.pk}/act/{name}/"' in html
    assert html.count('name="csrfmiddlewaretoken"') == len(actions) + 1, "each action, and log out"


def test_someone_who_does_not_own_the_prompt_sees_the_page_without_actions(alice, bob):
    make_prompt(alice, versions=2)
    rollout = start(alice)

    response = logged_in(bob).get(live_url(rollout))

    assert response.status_code == 200
    assert response.context["actions"] == []
    assert "only its owners (alice) or an admin run its rollouts" in response.content.decode()


def test_the_live_part_is_the_refreshing_fragment_and_is_not_cached(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)

    response = logged_in(alice).get(reverse("admin:rollouts_rollout_live", args=[rollout.pk]))

    html = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert html.lstrip().startswith('<div id="pr-live" data-state="running" data-active="true"')
    assert "<html" not in html and "pr-actions" not in html


def test_an_ended_rollout_page_does_not_refresh_itself(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    Rollout.objects.filter(pk=rollout.pk).update(state="aborted", ended_at=timezone.now())

    html = logged_in(alice).get(live_url(rollout)).content.decode()

    assert 'data-active="false"' in html
    assert "this page refreshes every" not in html


def test_pages_of_a_rollout_that_does_not_exist_redirect_to_the_list(alice):
    client = logged_in(alice)

    page = client.get(reverse("admin:rollouts_rollout_change", args=[999]))
    part = client.get(reverse("admin:rollouts_rollout_live", args=[999]))

    assert page.status_code == part.status_code == 302
    assert page.url == part.url == reverse("admin:index")


def conditions(*, elapsed=240.0, samples=(900, 120), waiting=(), failing=(), checked=2, manual=False):  # type: ignore[no-untyped-def]
    return StepConditions(
        time=TimeOnStep(elapsed, 600, 3600),
        samples=None if samples is None else SamplesPerArm(*samples, min_samples=200),
        gates=GatesPassing(checked, failing, waiting),
        approval=Approval(manual),
    )


def test_each_condition_the_controller_checked_reads_as_a_sentence():
    rows = condition_rows(conditions(waiting=("error_rate",)))

    assert {row.name: (row.met, row.detail) for row in rows} == {
        "time": (False, "4 min of 10 min: 6 min left"),
        "samples per arm": (False, "baseline 900 of 200 · candidate 120 of 200"),
        "gates": (False, "insufficient data: error rate"),
        "approval": (True, "automatic"),
    }


def test_met_conditions_and_a_manual_step_read_as_such():
    rows = condition_rows(conditions(elapsed=720.0, samples=(900, 300), manual=True))

    assert {row.name: (row.met, row.detail) for row in rows} == {
        "time": (True, "12 min on this step of 10 min"),
        "samples per arm": (True, "baseline 900 of 200 · candidate 300 of 200"),
        "gates": (True, "every gate passes"),
        "approval": (False, "manual: someone must promote this step"),
    }


def test_the_last_step_shows_no_samples_and_failing_gates_by_name():
    last = condition_rows(conditions(samples=None, checked=1))
    failing = condition_rows(conditions(failing=("latency_p95_ms",)))

    assert [(row.name, row.detail) for row in last if row.name != "time"] == [
        ("gates", "no absolute gate fails (insufficient_data does not hold this step)"),
        ("approval", "automatic"),
    ]
    assert {row.name: row.detail for row in failing}["gates"] == "failing: latency p95"


def test_a_paused_rollout_shows_what_was_checked_before_the_pause(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    rollout_evaluate(rollout_id=rollout.pk)
    rollout_pause(actor=actor_for(alice), rollout_id=rollout.pk)

    progress = logged_in(alice).get(live_url(rollout)).context["live"].progress

    assert progress.summary.startswith("Paused: 10% stay on the candidate and nothing is evaluated.")
    assert "At the last evaluation" in progress.summary
    assert [c.name for c in progress.conditions] == ["time", "samples per arm", "gates", "approval"]
