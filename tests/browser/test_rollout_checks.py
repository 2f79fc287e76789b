"""Required checks on a rollout's live page, in a real browser: each check's state with CI's link,
Start refused while a check is pending, and the page following CI's reports by itself."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from rollouts.checks import rollout_check_report, rollout_checks_evaluate_many
from rollouts.models import Rollout
from rollouts.services import rollout_create
from tests.browser.test_rollout_flows import ACTIONS, act, owner
from tests.factories import actor_for, make_prompt

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_live_page_shows_each_required_check_with_its_link_and_follows_ci(page: Page, log_in, screenshot):
    alice = owner()
    make_prompt(alice, versions=2)
    rollout = rollout_create(
        actor=actor_for(alice), prompt_name="support.answer", candidate_version=2, start=False,
        required_checks=["offline-eval", "safety"],
    )  # fmt: skip
    rollout_check_report(
        actor=actor_for(alice), rollout_id=rollout.pk, name="offline-eval", status="pass",
        detail="helpfulness 0.84 vs 0.81 on 500 items", url="https://ci.example.com/runs/4711", as_owner=True,
    )  # fmt: skip
    log_in("alice")

    page.goto(f"/admin/rollouts/rollout/{rollout.pk}/change/")
    checks = page.locator("#pr-checks table tbody tr")
    expect(checks).to_have_count(2)
    expect(checks.nth(0)).to_contain_text("offline-eval")
    expect(checks.nth(0)).to_contain_text("helpfulness 0.84 vs 0.81 on 500 items")
    expect(checks.nth(0).get_by_role("link")).to_have_attribute("href", "https://ci.example.com/runs/4711")
    expect(checks.nth(1)).to_contain_text("pending")
    expect(page.locator("#pr-checks h2")).to_contain_text("unless all pass within 24 h")
    expect(page.locator(".pr-progress-summary")).to_contain_text("(1 of 2 so far); then it may be started")
    screenshot("rollout-required-checks")

    act(page, "Start", "go", "Start: 10% to v2")
    expect(page.locator("ul.messagelist .error")).to_contain_text("not yet: safety (pending)")
    assert Rollout.objects.get().state == "pending"

    # CI reports the last check; the page shows it without a reload, and Start then works.
    rollout_check_report(
        actor=actor_for(alice), rollout_id=rollout.pk, name="safety", status="pass", as_owner=True
    )
    rollout_checks_evaluate_many(rollout_ids=[rollout.pk])
    expect(checks.nth(1)).to_contain_text("pass", timeout=12_000)
    act(page, "Start", "checks passed", "Start: 10% to v2")
    expect(page.locator(".pr-headline .pr-state")).to_have_text("Running")
    expect(page.locator(ACTIONS + " summary")).to_contain_text(["Pause"])
