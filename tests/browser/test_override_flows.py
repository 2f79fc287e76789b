"""What a prompt owner does with overrides in the admin, in a real browser: from the prompt's
page to its overrides, add one for a QA unit and one for a tenant, read the confirmation, and
expire one."""

import pytest
from playwright.sync_api import Page, expect

from serving.models import Override
from tests.browser.test_admin_flows import staff_user
from tests.factories import make_prompt
from tests.serving.helpers import put_rollout

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_adds_and_expires_overrides(page: Page, log_in, screenshot):
    alice = staff_user("alice")
    prompt = make_prompt(alice, versions=3)
    put_rollout(prompt, baseline=1, candidate=2, percent="10")
    log_in("alice")

    page.goto(f"/admin/registry/prompt/{prompt.pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Overrides").click()
    expect(page.locator("#overrides")).to_contain_text("No overrides")

    # QA sees the rollout's candidate, whatever its bucket.
    page.get_by_label("a unit").check()
    page.fill("#id_unit", "qa-7")
    page.select_option("#id_serve", "arm:candidate")
    page.fill("#id_reason", "QA of the candidate before 10% of users see it")
    page.get_by_role("button", name="Add override").click()
    qa = Override.objects.get(unit="qa-7")
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Override #{qa.pk} added: unit qa-7 is served the candidate"
    )

    # A tenant stays on v1 until the end of the year.
    page.get_by_label("an attribute value").check()
    page.fill("#id_attribute", "tenant")
    page.fill("#id_value", "acme")
    page.select_option("#id_serve", "version:1")
    page.fill("#id_reason", "contract freeze")
    page.fill("#id_expires_at", "2099-12-31 18:00")
    page.get_by_role("button", name="Add override").click()
    tenant = Override.objects.get(attribute="tenant")
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Override #{tenant.pk} added: tenant = acme is served v1"
    )
    rows = page.locator("#overrides tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("2099-12-31 18:00:00 UTC")
    screenshot("overrides")

    page.get_by_role("button", name=f"Expire override {qa.pk}").click()
    expect(page.locator("ul.messagelist")).to_contain_text(f"Override #{qa.pk} expired")
    expect(rows).to_have_count(1)
    assert list(Override.objects.values_list("pk", flat=True)) == [tenant.pk]
