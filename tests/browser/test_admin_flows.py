"""What a prompt owner does in the admin, in a real browser: create a prompt, publish versions,
compare them, move a label (and a superuser reads the audit log); and create an API key whose
secret is shown once."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, Route, expect

from access.models import ApiKey
from access.services import hash_key
from audit.models import AuditEntry
from tests.browser.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def staff_user(username: str, *, superuser: bool = False):  # type: ignore[no-untyped-def]
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username, password=PASSWORD)
    return User.objects.create_user(username, password=PASSWORD, is_staff=True)


def test_an_owner_publishes_compares_and_labels_versions(page: Page, log_in, screenshot):
    staff_user("alice")
    log_in("alice")

    # Create a prompt: the form goes on to its first version.
    page.get_by_role("link", name="Prompts").first.click()
    page.get_by_role("link", name="Add prompt").click()
    screenshot("prompt-add")
    page.fill("#id_name", "support.answer")
    page.fill("#id_tags", "support, email")
    page.get_by_role("button", name="Create prompt").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Prompt “support.answer” created")
    page.fill("#id_template", "Answer {{question}} for {{customer}}.\nBe polite.")
    page.fill("#id_model", "gpt-4o-mini")
    page.fill("#id_config", '{"temperature": 0.2}')
    page.fill("#id_message", "first answer")
    page.get_by_role("button", name="Publish version").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Published v1. Labels on it: production.")

    # A second version from the form pre-filled with the first.
    page.locator(".object-tools").get_by_role("link", name="New version").click()
    expect(page.locator("#id_template")).to_have_value("Answer {{question}} for {{customer}}.\nBe polite.")
    expect(page.locator("#id_model")).to_have_value("gpt-4o-mini")
    screenshot("version-form")
    page.fill("#id_template", "Answer {{question}} for {{customer}}.\nBe polite and brief.")
    page.fill("#id_message", "briefer answers")
    page.get_by_role("button", name="Publish version").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Published v2.")
    expect(page.locator(".field-latest .readonly")).to_have_text("v2")
    screenshot("prompt-page")

    # Compare v1 (production) with v2: the changed line is highlighted, the rest is not.
    page.locator(".object-tools").get_by_role("link", name="Compare versions").click()
    expect(page.locator("#id_old")).to_have_value("1")
    expect(page.locator("#id_new")).to_have_value("2")
    changed = page.locator("tr.pr-diff-replace")
    expect(changed).to_have_count(1)
    expect(changed.locator("td.pr-new")).to_have_text("Be polite and brief.")
    expect(changed.locator("td.pr-new .pr-mark")).to_have_text(" and brief")
    expect(changed.locator("td.pr-new")).not_to_have_css("background-color", "rgba(0, 0, 0, 0)")
    unchanged = page.locator("tr.pr-diff-equal td.pr-new").first
    expect(unchanged).to_have_css("background-color", "rgba(0, 0, 0, 0)")
    screenshot("diff-page")

    # Move "staging" to v2, with a reason.
    page.locator(".breadcrumbs").get_by_role("link", name="support.answer").click()
    page.locator(".object-tools").get_by_role("link", name="Move a label").click()
    page.fill("#id_label", "staging")
    page.select_option("#id_version", "2")
    page.fill("#id_reason", "QA signed off")
    screenshot("move-label")
    page.get_by_role("button", name="Move label").click()
    expect(page.locator("ul.messagelist")).to_contain_text("“staging” now points at v2.")
    expect(page.locator(".inline-related").first).to_contain_text("staging")

    # The audit log is for superusers: alice's page has no link to it, root reads every step of
    # the prompt, by alice through the admin.
    expect(page.locator(".object-tools").get_by_role("link", name="Audit log")).to_have_count(0)
    staff_user("root", superuser=True)
    page.context.clear_cookies()
    log_in("root")
    page.goto("/admin/registry/prompt/")
    page.locator("#result_list").get_by_role("link", name="support.answer").click()
    page.locator(".object-tools").get_by_role("link", name="Audit log").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.first).to_contain_text("label.move")
    expect(rows.first).to_contain_text("QA signed off")
    screenshot("audit-log")

    # The prompt list and a version's own page.
    page.goto("/admin/registry/prompt/")
    expect(page.locator("#result_list")).to_contain_text("support.answer")
    screenshot("prompt-list")
    page.goto("/admin/registry/promptversion/")
    page.get_by_role("link", name="support.answer v2").click()
    expect(page.locator(".field-labels_on_it")).to_contain_text("staging")
    screenshot("version-page")
    entries = AuditEntry.objects.filter(prompt_name="support.answer")
    assert {(e.actor_name, e.via) for e in entries} == {("alice", "admin")}
    assert sorted(e.action for e in entries) == [
        "label.move",
        "label.move",
        "prompt.create",
        "version.create",
        "version.create",
    ]


def test_an_api_key_secret_is_shown_once(page: Page, log_in, screenshot):
    staff_user("root", superuser=True)
    log_in("root")

    page.goto("/admin/access/apikey/add/")
    page.fill("#id_name", "checkout service")
    page.check("input[name=scopes][value=read]")
    page.check("input[name=scopes][value=ingest]")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#api-key-secret").input_value()
    screenshot("api-key-created")

    assert re.fullmatch(r"pr_[A-Za-z0-9_-]{40,}", secret)
    key = ApiKey.objects.get()
    assert key.key_hash == hash_key(secret) and key.scopes == ["ingest", "read"]

    page.reload()
    screenshot("api-key-reloaded")
    expect(page.locator("ul.messagelist")).to_contain_text("its secret is not shown again")
    expect(page.locator("body")).not_to_contain_text(secret)
    assert secret not in page.content()
    assert ApiKey.objects.count() == 1

    page.goto(f"/admin/access/apikey/{key.pk}/change/")
    page.fill("#revoke-reason", "rotated")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator("ul.messagelist")).to_contain_text("API key “checkout service” is revoked.")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_the_api_docs_render_with_every_request_off_this_server_blocked(page: Page, live_server) -> None:
    """Swagger UI comes from the service's own static files: on a machine without internet (and
    with every other host blocked here) the docs page still renders."""
    elsewhere: list[str] = []

    def only_this_server(route: Route) -> None:
        if route.request.url.startswith(str(live_server)):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto("/api/v1/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("promptramp API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert elsewhere == []
