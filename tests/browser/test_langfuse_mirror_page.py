"""The Langfuse mirror on the admin's prompt page, in a real browser: a stopped mirror says why,
and its owner resumes it with a POST button once Langfuse is put right."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, expect

from registry.langfuse_mirror import mirror_deliver_due
from registry.services import prompt_create, version_create
from tests.browser.conftest import PASSWORD
from tests.factories import actor_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_sees_why_the_mirror_stopped_and_resumes_it(
    page: Page, log_in, screenshot, settings, langfuse
):
    settings.PROMPTRAMP_LANGFUSE_MIRROR = True
    alice = get_user_model().objects.create_user("alice", password=PASSWORD, is_staff=True)
    langfuse.add_prompt_version({"name": "billing.reply", "prompt": "made in Langfuse"})
    langfuse.add_prompt_version({"name": "billing.reply", "prompt": "also made in Langfuse"})
    prompt: Any = prompt_create(actor=actor_for(alice), name="billing.reply")
    version_create(actor=actor_for(alice), prompt_name="billing.reply", template="Hello {{name}}")
    mirror_deliver_due(now=timezone.now())

    log_in("alice")
    page.goto(f"/admin/registry/prompt/{prompt.pk}/change/")
    field = page.locator(".field-mirror .readonly")
    expect(field).to_contain_text("stopped: Langfuse already has version 2 of 'billing.reply'")
    screenshot("mirror-stopped")

    del langfuse.prompts["billing.reply"]  # the stray versions are deleted in Langfuse
    page.get_by_role("button", name="Resume the Langfuse mirror").click()

    expect(page.locator("ul.messagelist")).to_contain_text("The Langfuse mirror of billing.reply resumes")
    expect(field).to_have_text("pending")
    expect(page.get_by_role("button", name="Resume the Langfuse mirror")).to_have_count(0)
    mirror_deliver_due(now=timezone.now())
    page.reload()
    expect(field).to_have_text("in sync")
    assert [v["prompt"] for v in langfuse.prompts["billing.reply"]] == ["Hello {{name}}"]
