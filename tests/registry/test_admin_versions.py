"""Version pages of the admin: read-only, and the "new version" form that calls version_create."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from registry.models import PromptVersion
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_version_page_shows_content_config_author_hash_and_labels(alice):
    prompt = make_prompt(alice, versions=1)
    version = prompt.versions.get()

    response = logged_in(alice).get(reverse("admin:registry_promptversion_change", args=[version.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    for expected in (
        "v1: Answer {{question}} for {{customer}}",
        "gpt-4o-mini",
        "&quot;temperature&quot;: 0.2",
        "question, customer",
        "version 1",
        version.content_hash,
        "production",
    ):
        assert expected in html
    assert 'name="_save"' not in html


def test_a_version_cannot_be_added_changed_or_deleted_in_the_admin(admin_user, alice):
    version = make_prompt(alice, versions=1).versions.get()
    client = logged_in(admin_user)

    changed = client.post(reverse("admin:registry_promptversion_change", args=[version.pk]), {"message": "x"})
    deleted = client.post(reverse("admin:registry_promptversion_delete", args=[version.pk]), {"post": "yes"})
    added = client.get(reverse("admin:registry_promptversion_add"))

    assert (changed.status_code, deleted.status_code, added.status_code) == (403, 403, 403)
    version.refresh_from_db()
    assert version.message == "version 1"


def test_new_version_form_is_prefilled_from_the_latest_version(alice):
    prompt = make_prompt(alice, versions=2)

    response = logged_in(alice).get(reverse("admin:registry_prompt_new_version", args=[prompt.pk]))

    form = response.context["form"]
    assert response.status_code == 200
    assert form.initial["template"] == "v2: Answer {{question}} for {{customer}}"
    assert form.initial["model"] == "gpt-4o-mini"
    assert json.loads(form.initial["config"]) == {"temperature": 0.2}
    assert "Pre-filled from v2." in response.content.decode()


def test_publishing_from_the_form_creates_a_version_with_labels_audited_as_admin(alice):
    prompt = make_prompt(alice, versions=1)

    response = logged_in(alice).post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]),
        {
            "template": "Reply to {{question}}\r\nkindly",
            "model": "gpt-4o",
            "config": '{"temperature": 0.5}',
            "message": "kinder",
            "labels": "staging",
        },
    )

    assert response.status_code == 302
    version = prompt.versions.get(version=2)
    assert version.template == "Reply to {{question}}\nkindly"
    assert (version.model, version.config, version.message) == ("gpt-4o", {"temperature": 0.5}, "kinder")
    assert prompt.labels.get(name="staging").version == version
    created = AuditEntry.objects.get(action="version.create", object_id="2")
    moved = AuditEntry.objects.get(action="label.move", object_id="staging")
    assert (created.actor_name, created.via) == ("alice", "admin")
    assert (moved.actor_name, moved.via, moved.reason) == ("alice", "admin", "kinder")


def test_sending_the_prefilled_form_unchanged_makes_no_new_version(alice):
    prompt = make_prompt(alice, versions=1)
    client = logged_in(alice)
    initial = (
        client.get(reverse("admin:registry_prompt_new_version", args=[prompt.pk])).context["form"].initial
    )
    browser_text = {name: value.replace("\n", "\r\n") for name, value in initial.items()}

    response = client.post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]),
        {**browser_text, "labels": "staging"},
        follow=True,
    )

    assert prompt.versions.count() == 1
    assert prompt.labels.get(name="staging").version.version == 1
    assert "Same content as v1: no new version was made." in response.content.decode()


def test_config_that_is_not_json_is_shown_on_the_form_and_nothing_is_published(alice):
    prompt = make_prompt(alice, versions=1)

    response = logged_in(alice).post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]),
        {"template": "new {{x}}", "config": "{temperature: 1}"},
    )

    assert response.status_code == 200
    assert "Config is not valid JSON" in response.content.decode()
    assert prompt.versions.count() == 1


DEEP_JSON = "[" * 100_000 + "]" * 100_000  # Python's json.loads raises RecursionError on it


def post_new_version(owner, field: str, text: str):  # type: ignore[no-untyped-def]
    """A chat prompt's new version with ``text`` as its messages, or a text prompt's with ``text``
    as its config; the response and the counts of versions and audit entries before and after."""
    kind = "chat" if field == "messages" else "text"
    prompt = make_prompt(owner, name=f"support.{kind}", kind=kind, versions=1)
    data = {"template": "new {{x}}", "config": "{}"} if kind == "text" else {"config": "{}"}
    before = (PromptVersion.objects.count(), AuditEntry.objects.count())

    response = logged_in(owner).post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]), data | {field: text}
    )

    return response, before, (PromptVersion.objects.count(), AuditEntry.objects.count())


@pytest.mark.parametrize(
    ("field", "text", "error"),
    [
        ("config", DEEP_JSON, "Config is not valid JSON: depth limit exceeded"),
        ("messages", DEEP_JSON, "Messages is not valid JSON: depth limit exceeded"),
        (
            "config",
            '{"a": ' + "[" * 64 + "]" * 64 + "}",
            "Config nests lists and objects more than 64 levels deep.",
        ),
        ("messages", "[" * 65 + "]" * 65, "Messages nests lists and objects more than 64 levels deep."),
    ],
)
def test_json_nested_deeper_than_the_api_takes_is_a_form_error_and_nothing_is_stored(
    alice, field, text, error
):
    response, before, after = post_new_version(alice, field, text)

    assert response.status_code == 200
    [shown] = response.context["form"].errors[field]
    assert shown.startswith(error) and shown in response.content.decode()
    assert after == before


@pytest.mark.parametrize(
    ("field", "text", "error"),
    [
        ("config", '{"stop": "end\\u0000"}', "Config may not contain NUL (\\u0000) characters."),
        ("config", '{"\\u0000": 1}', "Config may not contain NUL (\\u0000) characters."),
        (
            "messages",
            '[{"role": "user", "content": "a\\u0000b"}]',
            "Messages may not contain NUL (\\u0000) characters.",
        ),
    ],
)
def test_json_holding_a_nul_character_is_a_form_error_and_nothing_is_stored(alice, field, text, error):
    response, before, after = post_new_version(alice, field, text)

    assert response.status_code == 200
    assert response.context["form"].errors[field] == [error]
    assert error in response.content.decode()
    assert after == before


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"stop": "\\ud800"}', "Config is not valid JSON: no low surrogate in string"),
        ('{"temperature": 1e400}', "Config is not valid JSON: number is infinity when parsed as double"),
    ],
)
def test_json_the_api_refuses_though_python_reads_it_is_a_form_error(alice, text, error):
    response, before, after = post_new_version(alice, "config", text)

    assert response.status_code == 200
    [shown] = response.context["form"].errors["config"]
    assert shown.startswith(error) and shown in response.content.decode()
    assert after == before


def test_an_error_of_the_service_is_shown_on_the_form(alice):
    prompt = make_prompt(alice, versions=1)

    response = logged_in(alice).post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]),
        {"template": "new {{x}}", "config": "[1, 2]"},
    )

    assert response.status_code == 400
    assert "&#x27;config&#x27; must be a JSON object." in response.content.decode()
    assert prompt.versions.count() == 1


def test_a_staff_user_who_is_not_an_owner_is_told_and_cannot_publish(alice, bob):
    prompt = make_prompt(alice, versions=1)
    client = logged_in(bob)

    page = client.get(reverse("admin:registry_prompt_new_version", args=[prompt.pk]))
    posted = client.post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]), {"template": "mine {{x}}"}
    )

    assert "You are not an owner of “support.answer”" in page.content.decode()
    assert posted.status_code == 403
    assert (
        "Only the owners of &#x27;support.answer&#x27; or an admin may change it." in posted.content.decode()
    )
    assert prompt.versions.count() == 1


def test_a_superuser_may_publish_on_any_prompt(admin_user, alice):
    prompt = make_prompt(alice, versions=1)

    logged_in(admin_user).post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]), {"template": "root {{x}}"}
    )

    assert prompt.versions.get(version=2).author_name == "root"


def test_chat_prompts_publish_messages_written_as_json(alice):
    prompt = make_prompt(alice, name="support.chat", kind="chat", versions=1)
    client = logged_in(alice)
    page = client.get(reverse("admin:registry_prompt_new_version", args=[prompt.pk]))
    messages = [
        {"role": "system", "content": "Be brief with {{customer}}"},
        {"role": "user", "content": "{{q}}"},
    ]

    client.post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]),
        {"messages": json.dumps(messages), "model": "gpt-4o-mini", "config": "{}"},
    )

    assert "template" not in page.context["form"].fields
    assert json.loads(page.context["form"].initial["messages"])[0]["content"] == "v1: help {{customer}}"
    assert PromptVersion.objects.get(prompt=prompt, version=2).messages == messages


def test_the_first_version_of_a_new_prompt_becomes_production(alice):
    prompt = make_prompt(alice, versions=0)

    logged_in(alice).post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]),
        {"template": "Hi {{name}}", "config": ""},
    )

    assert prompt.labels.get(name="production").version.version == 1


def test_the_versions_list_links_from_a_prompt_show_only_its_versions(alice):
    prompt = make_prompt(alice, name="support.answer", versions=2)
    make_prompt(alice, name="sales.pitch", versions=1)

    response = logged_in(alice).get(
        reverse("admin:registry_promptversion_changelist"), {"prompt__id__exact": prompt.pk}
    )

    assert response.status_code == 200
    assert [str(v) for v in response.context["cl"].result_list] == ["support.answer v2", "support.answer v1"]


def test_a_chat_version_page_shows_each_message_with_its_role(alice):
    prompt = make_prompt(alice, name="support.chat", kind="chat", versions=2)

    response = logged_in(alice).get(
        reverse("admin:registry_promptversion_change", args=[prompt.versions.get(version=2).pk])
    )

    html = response.content.decode()
    assert '<div class="pr-role">system</div><pre class="pr-code">v2: help {{customer}}</pre>' in html
    assert "?old=1&amp;new=2" in html
