"""The second approver in a real browser: on a prompt that requires one, the author of the
candidate sees why before clicking, their Start is refused with a message and changes nothing,
and another owner's Start works."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from registry.services import prompt_create, version_create
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_create
from tests.browser.conftest import PASSWORD
from tests.browser.test_rollout_flows import ACTIONS, act
from tests.factories import actor_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def staff(username: str) -> Any:
    return get_user_model().objects.create_user(username, password=PASSWORD, is_staff=True)


def test_the_author_cannot_start_their_rollout_and_another_owner_can(page: Page, log_in, screenshot):
    alice, _ = staff("alice"), staff("bob")
    prompt_create(actor=actor_for(alice), name="support.answer", owners=["bob"], require_second_approver=True)
    for n in (1, 2):
        version_create(
            actor=actor_for(alice), prompt_name="support.answer", template=f"v{n} {{{{question}}}}"
        )
    rollout = rollout_create(
        actor=actor_for(alice), prompt_name="support.answer", candidate_version=2, start=False
    )

    log_in("alice")
    page.goto(f"/admin/rollouts/rollout/{rollout.pk}/change/")
    expect(page.locator("#pr-approver-note")).to_contain_text("v2 was published by alice")
    act(page, "Start", "my own change", "Start: 10% to v2")

    expect(page.locator("ul.messagelist .error")).to_contain_text(
        "Could not start: 'support.answer' requires a second approver"
    )
    expect(page.locator(".pr-headline .pr-state")).to_have_text("Pending")
    screenshot("second-approver-refused")
    assert Rollout.objects.get().state == "pending"

    page.context.clear_cookies()
    log_in("bob")
    page.goto(f"/admin/rollouts/rollout/{rollout.pk}/change/")
    expect(page.locator("#pr-approver-note")).to_have_count(0)
    act(page, "Start", "reviewed v2", "Start: 10% to v2")

    expect(page.locator("ul.messagelist")).to_contain_text("Started: v2 serves 10% of users.")
    expect(page.locator(ACTIONS + " summary")).to_have_text(["Pause", "Promote", "Roll back", "Abort"])
    assert Rollout.objects.get().state == "running"
    assert RolloutTransition.objects.get().actor_name == "bob"
