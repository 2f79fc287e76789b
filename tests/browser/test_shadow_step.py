"""A rollout in its shadow step on its live page, in a real browser: the plan shows the shadow
step, the headline says nobody is served the candidate, and the charts and totals show the
shadow runs beside the baseline of the same units."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from rollouts.controller import rollout_evaluate
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_create
from tests.browser.test_rollout_flows import owner, report_minute
from tests.factories import actor_for, make_prompt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_live_page_shows_a_shadow_step_and_its_arms(page: Page, log_in, screenshot):
    alice = owner()
    make_prompt(alice, versions=2)
    plan = [
        {"shadow": True, "percent": 20, "min_duration_s": 3600, "min_samples": 2000},
        {"percent": 10, "min_duration_s": 600, "min_samples": 200},
        {"percent": 50, "min_duration_s": 600, "min_samples": 200},
        {"percent": 100, "min_duration_s": 0, "min_samples": 0},
    ]
    rollout = rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=plan,
        reason="new tone",
    )
    now = timezone.now()
    began = now - timedelta(minutes=30)
    # Given it started half an hour ago (the service stamps it now),
    Rollout.objects.filter(pk=rollout.pk).update(created_at=began, started_at=began, step_started_at=began)
    RolloutTransition.objects.filter(rollout=rollout).update(at=began)
    rollout.refresh_from_db()
    # with 300 requests a minute, 20% of them in the shadow sample, each sampled one also run unseen:
    minute = began.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < now - timedelta(minutes=1):
        report_minute(rollout, "baseline", minute, 240)
        report_minute(rollout, "baseline", minute, 60, shadow_sample=True)
        report_minute(rollout, "shadow", minute, 60, error_rate=0.02, latency_ms=950.0, score=0.77)
        minute += timedelta(minutes=1)
    rollout_evaluate(rollout_id=rollout.pk)
    assert Rollout.objects.get(pk=rollout.pk).state == "running"
    log_in("alice")

    page.goto(f"/admin/rollouts/rollout/{rollout.pk}/change/")

    expect(page.locator(".pr-share")).to_contain_text("0% of users on the candidate")
    expect(page.locator(".pr-share")).to_contain_text("shadow 20%")
    expect(page.locator("tr[aria-current=step]")).to_contain_text("shadow 20%")
    for arm in ("baseline", "shadow", "shadow_baseline"):
        expect(page.locator(f"figure.pr-chart path.pr-arm-{arm}")).to_have_count(5)
    expect(page.locator(".pr-arms tbody th")).to_contain_text(
        ["baseline v1", "candidate v2", "shadow v2", "baseline (shadow sample) v1"]
    )
    requests = page.locator("figure.pr-chart").first
    expect(requests.locator(".pr-latest")).to_contain_text("shadow 60")
    expect(requests.locator(".pr-latest")).to_contain_text("baseline (shadow sample) 60")
    expect(requests.locator("text.pr-marker-label")).to_have_text(["shadow 20%"])
    expect(page.locator(".pr-history")).to_contain_text("shadow 20%")
    expect(page.locator("[aria-labelledby=pr-step-title] .pr-conditions")).to_contain_text(
        "baseline of the shadow sample 1,"
    )
    path = screenshot("shadow-step")
    assert path.stat().st_size > 50_000
