"""What a prompt owner does with rollouts in the admin, in a real browser: start one from a
version, follow it on its live page, pause, resume, promote and roll it back; read the per-arm
charts of real outcomes; and see the page follow a change made elsewhere, by itself."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, expect

from audit.models import AuditEntry
from outcomes.services import events_ingest, outcome_minutes_flush
from registry.models import Label
from rollouts.controller import rollout_evaluate
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_create, rollout_pause, rollout_promote
from tests.browser.conftest import PASSWORD
from tests.factories import actor_for, make_prompt
from tests.rollouts.outcomes import OBSERVE_TRAFFIC

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ACTIONS = "#pr-actions"


def owner(username: str = "alice") -> Any:
    return get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)


def act(page: Page, action: str, reason: str, confirm: str, screenshot: Any = None) -> None:
    """Open an action's form, give the reason and confirm."""
    page.locator(ACTIONS).get_by_text(action, exact=True).click()
    form = page.locator(f"{ACTIONS} details[open] form")
    form.get_by_label("Reason").fill(reason)
    if screenshot:
        screenshot(f"rollout-{action.lower().replace(' ', '-')}-form")
    form.get_by_role("button", name=confirm).click()


def test_an_owner_starts_pauses_resumes_promotes_and_rolls_back_a_rollout(page: Page, log_in, screenshot):
    alice = owner()
    prompt = make_prompt(alice, versions=2)
    log_in("alice")

    # From v2's page to the start form, pre-filled with v2, the default plan and gates.
    page.goto(f"/admin/registry/promptversion/{prompt.versions.get(version=2).pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Start a rollout").click()
    expect(page.locator("#id_candidate_version")).to_have_value("2")
    expect(page.locator("#id_plan")).to_contain_text('"percent": 25')
    expect(page.locator("#id_gates")).to_contain_text('"metric": "latency_p95_ms"')
    screenshot("rollout-start")
    page.fill("#id_reason", "tighter answers")
    page.get_by_role("button", name="Create rollout").click()

    # The live page: running at 10%, step 1 of 4 highlighted and waiting.
    expect(page.locator("ul.messagelist")).to_contain_text("v2 serves 10% of users, v1 the rest.")
    expect(page.locator(".pr-headline .pr-state")).to_have_text("Running")
    expect(page.locator("tr[aria-current=step]")).to_contain_text("10%")
    expect(page.locator(".pr-progress-summary")).to_contain_text("Not evaluated on this step yet")
    expect(page.locator(ACTIONS + " summary")).to_have_text(["Pause", "Promote", "Roll back", "Abort"])
    rollout = Rollout.objects.get()

    act(page, "Pause", "latency looks odd", "Pause the rollout", screenshot)
    expect(page.locator("ul.messagelist")).to_contain_text("Paused at 10%")
    expect(page.locator(".pr-reason")).to_contain_text("latency looks odd")
    expect(page.locator(ACTIONS + " summary")).to_have_text(["Resume", "Promote", "Roll back", "Abort"])

    act(page, "Resume", "it was the provider", "Resume the rollout")
    expect(page.locator("ul.messagelist")).to_contain_text("Resumed at 10%")

    act(page, "Promote", "QA read 50 answers", "Promote to 25%")
    expect(page.locator("ul.messagelist")).to_contain_text("Promoted to step 2 of 4: v2 serves 25% of users.")
    expect(page.locator("tr[aria-current=step]")).to_contain_text("25%")
    screenshot("rollout-promoted")

    act(page, "Roll back", "answers too short", "Roll back to v1")
    expect(page.locator("ul.messagelist")).to_contain_text("Rolled back: every user is on v1 again.")
    expect(page.locator(".pr-headline .pr-state")).to_have_text("Rolled back")
    expect(page.locator(ACTIONS)).to_have_count(0)
    history = page.locator(".pr-history > tbody > tr")
    expect(history).to_have_count(5)
    expect(history.first).to_contain_text("answers too short")
    screenshot("rollout-rolled-back")

    # The list of rollouts, filtered by prompt.
    page.locator(".object-tools").get_by_role("link", name="Its rollouts").click()
    expect(page.locator(".object-tools a")).to_have_attribute(
        "href", "/admin/rollouts/rollout/add/?prompt=support.answer"
    )
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody tr")).to_contain_text("v1 → v2")
    expect(page.locator("#result_list .pr-state")).to_have_text("rolled back")
    screenshot("rollouts-list")

    rollout.refresh_from_db()
    assert (rollout.state, rollout.percent) == ("rolled_back", 0)
    assert Label.objects.get(prompt=prompt, name="production").version.version == 1
    entries = AuditEntry.objects.filter(object_type="rollout").order_by("id")
    assert [(e.action, e.actor_name, e.via, e.reason) for e in entries] == [
        ("rollout.create", "alice", "admin", "tighter answers"),
        ("rollout.started", "alice", "admin", "tighter answers"),
        ("rollout.paused", "alice", "admin", "latency looks odd"),
        ("rollout.resumed", "alice", "admin", "it was the provider"),
        ("rollout.advanced", "alice", "admin", entries[4].reason),
        ("rollout.rolled_back", "alice", "admin", "answers too short"),
    ]
    assert entries[4].reason.startswith("QA read 50 answers (advanced from 10% to 25%")


def test_a_promote_past_a_failing_gate_is_refused_with_a_message(page: Page, log_in):
    alice = owner()
    make_prompt(alice, versions=2)
    plan = [
        {"percent": 10, "min_duration_s": 0, "min_samples": 50},
        {"percent": 100, "min_duration_s": 0, "min_samples": 0},
    ]
    rollout = rollout_create(
        actor=actor_for(alice), prompt_name="support.answer", candidate_version=2, plan=plan,
        gates=[{"metric": "error_rate", "max_increase_abs": 0.01}], traffic=OBSERVE_TRAFFIC,
    )  # fmt: skip
    # (a step's window starts at the first whole minute after it began)
    next_minute = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    report_minute(rollout, "baseline", next_minute, 1500, error_rate=0.01)
    report_minute(rollout, "candidate", next_minute, 1500, error_rate=0.2)
    log_in("alice")

    page.goto(f"/admin/rollouts/rollout/{rollout.pk}/change/")
    act(page, "Promote", "ship it", "Promote to 100%")

    expect(page.locator("ul.messagelist .error")).to_contain_text(
        "Could not promote: Cannot promote past a failing gate (error_rate)"
    )
    expect(page.locator(".pr-headline .pr-state")).to_have_text("Running")
    assert Rollout.objects.get().state == "running"


# --- real outcomes on the charts ------------------------------------------------------------


def report_minute(
    rollout: Rollout,
    arm: str,
    minute: datetime,
    count: int,
    *,
    error_rate: float = 0.01,
    latency_ms: float = 800.0,
    score: float = 0.8,
    cost_usd: float = 0.0021,
    shadow_sample: bool = False,
) -> None:
    """``count`` outcomes of one arm in one minute, as applications report them: lognormal
    latency, errors at ``error_rate``, a normal helpfulness score (the reference traffic of the
    controller's simulator), ingested as if they arrived in that minute, then flushed.
    ``shadow_sample``: baseline outcomes of the units in a shadow step's sample."""
    draw = random.Random(f"{rollout.pk}:{arm}:{shadow_sample}:{minute.isoformat()}")
    version = rollout.baseline.version if arm == "baseline" else rollout.candidate.version
    events = [
        {
            "event_id": str(uuid.UUID(int=draw.getrandbits(128))),
            "prompt": rollout.prompt.name,
            "version": version,
            "rollout_id": rollout.pk,
            "arm": arm,
            "latency_ms": round(draw.lognormvariate(0, 0.5) * latency_ms, 1),
            "error": draw.random() < error_rate,
            "cost_usd": round(draw.gauss(cost_usd, cost_usd / 10), 6),
            "scores": {"helpfulness": round(min(1.0, max(0.0, draw.gauss(score, 0.15))), 3)},
            "ts": (minute + timedelta(seconds=60 * i / count)).isoformat(),
            **({"shadow_sample": True} if shadow_sample else {}),
        }
        for i in range(count)
    ]
    arrival = (minute + timedelta(seconds=30)).timestamp()
    for start in range(0, count, 1000):
        events_ingest(body=orjson.dumps({"events": events[start : start + 1000]}), now=arrival)
    outcome_minutes_flush()


def rollout_of_40_minutes(alice: Any) -> Rollout:
    """A rollout started 40 minutes ago at 10%, promoted to 25% 25 minutes ago, with 300
    requests a minute split by its percent: the candidate a little slower, a little more often
    failing and a little less helpful than the baseline."""
    plan = [
        {"percent": 10, "min_duration_s": 600, "min_samples": 200},
        {"percent": 25, "min_duration_s": 3600, "min_samples": 2000},
        {"percent": 50, "min_duration_s": 1800, "min_samples": 2000, "approval": "manual"},
        {"percent": 100, "min_duration_s": 0, "min_samples": 0},
    ]
    actor = actor_for(alice)
    rollout = rollout_create(
        actor=actor, prompt_name="support.answer", candidate_version=2, plan=plan, reason="tighter answers"
    )
    rollout_promote(actor=actor, rollout_id=rollout.pk, reason="10% looked fine")
    now = timezone.now()
    began, promoted = now - timedelta(minutes=40), now - timedelta(minutes=25)
    # Given those transitions happened then (the services stamp them now):
    Rollout.objects.filter(pk=rollout.pk).update(created_at=began, started_at=began, step_started_at=promoted)
    first, second = RolloutTransition.objects.filter(rollout=rollout).order_by("id")
    RolloutTransition.objects.filter(pk=first.pk).update(at=began)
    RolloutTransition.objects.filter(pk=second.pk).update(at=promoted)
    rollout.refresh_from_db()
    minute = began.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < now - timedelta(minutes=1):
        percent = 10 if minute < promoted else 25
        candidates = 300 * percent // 100
        report_minute(rollout, "baseline", minute, 300 - candidates)
        report_minute(
            rollout, "candidate", minute, candidates, error_rate=0.014, latency_ms=860.0, score=0.78
        )
        minute += timedelta(minutes=1)
    rollout_evaluate(rollout_id=rollout.pk)
    return rollout


def test_the_live_page_charts_each_arm_of_real_outcomes(page: Page, log_in, screenshot):
    alice = owner()
    make_prompt(alice, versions=2)
    rollout = rollout_of_40_minutes(alice)
    assert Rollout.objects.get(pk=rollout.pk).state == "running", "the controller holds: the step is young"
    log_in("alice")

    page.goto(f"/admin/rollouts/rollout/{rollout.pk}/change/")

    charts = page.locator("figure.pr-chart")
    expect(charts.locator("figcaption strong")).to_have_text(
        ["requests per minute", "latency p95", "error rate", "cost per request", "score “helpfulness”"]
    )
    for arm in ("baseline", "candidate"):
        expect(page.locator(f"figure.pr-chart path.pr-arm-{arm}")).to_have_count(5)
    requests = charts.first
    expect(requests.locator(".pr-latest")).to_contain_text("baseline 225")
    expect(requests.locator(".pr-latest")).to_contain_text("candidate 75")
    expect(requests.locator("text.pr-marker-label")).to_have_text(["10%", "25%"])
    expect(page.locator("#pr-gates .pr-verdict")).to_have_count(5)  # four gates and the traffic check
    expect(page.locator("#pr-gates")).to_contain_text("traffic (candidate share)")
    expect(page.locator("tr[aria-current=step]")).to_contain_text("25%")
    expect(page.locator("[aria-labelledby=pr-step-title] .pr-conditions")).to_contain_text("time")
    path = screenshot("rollout-live")
    assert path.stat().st_size > 50_000
    page.locator("section", has=page.locator("#pr-charts-title")).screenshot(
        path=path.parent / "rollout-charts.png"
    )


def test_the_live_page_follows_a_change_made_elsewhere(page: Page, log_in):
    alice = owner()
    make_prompt(alice, versions=2)
    rollout = rollout_create(actor=actor_for(alice), prompt_name="support.answer", candidate_version=2)
    log_in("alice")
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(f"/admin/rollouts/rollout/{rollout.pk}/change/")
    expect(page.locator(".pr-headline .pr-state")).to_have_text("Running")
    updated = page.locator(".pr-updated").text_content()

    # The part of the page that refreshes itself does so while nothing changes,
    expect(page.locator(".pr-updated")).not_to_have_text(updated or "", timeout=12_000)
    # and when someone pauses the rollout through the API, the page reloads with its new actions.
    rollout_pause(actor=actor_for(alice), rollout_id=rollout.pk, reason="from the API")
    expect(page.locator(".pr-headline .pr-state")).to_have_text("Paused", timeout=12_000)
    expect(page.locator(ACTIONS + " summary")).to_have_text(["Resume", "Promote", "Roll back", "Abort"])
    expect(page.locator(".pr-reason")).to_contain_text("from the API")
    assert script_errors == []
