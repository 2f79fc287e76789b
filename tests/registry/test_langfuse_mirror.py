"""The Langfuse mirror, against a local server speaking Langfuse's public prompt API: every version
under the same name and number, production moves as labels, a diverged numbering stopping the
mirror for the prompt (said in the API, the admin and the audit log), a server error retried."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEntry
from registry.langfuse_mirror import backoff_seconds, mirror_deliver_due
from registry.models import LangfuseMirror
from registry.services import label_move, prompt_create, version_create
from tests.factories import actor_for, make_key


@pytest.fixture
def mirror(settings: Any, langfuse: Any) -> Any:
    settings.PROMPTRAMP_LANGFUSE_MIRROR = True
    return langfuse


def publish(owner: Any, template: str, name: str = "billing.reply") -> int:
    version, _ = version_create(
        actor=actor_for(owner), prompt_name=name, template=template, model="gpt-4o-mini"
    )
    return int(version.version)


def shown_in_api(alice: Any) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(alice, 'read')}")
    return client.get("/api/v1/prompts/billing.reply").json()["langfuse_mirror"]


def mirrored(fake: Any, name: str = "billing.reply") -> list[tuple[int, str]]:
    return [(v["version"], v["prompt"]) for v in fake.prompts.get(name, [])]


@pytest.mark.django_db
def test_every_version_is_created_with_its_number_and_production_follows(alice, mirror):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello {{name}}")
    publish(alice, "Hi {{name}}")
    publish(alice, "Dear {{name}}")

    [attempt] = mirror_deliver_due(now=timezone.now())

    assert attempt.outcome == "mirrored"
    assert mirrored(mirror) == [(1, "Hello {{name}}"), (2, "Hi {{name}}"), (3, "Dear {{name}}")]
    assert mirror.prompts["billing.reply"][0]["config"] == {"model": "gpt-4o-mini"}
    assert mirror.labels_of("billing.reply") == {"production": 1, "latest": 3}

    label_move(actor=actor_for(alice), prompt_name="billing.reply", label="production", version=3)
    label_move(actor=actor_for(alice), prompt_name="billing.reply", label="staging", version=2)
    mirror_deliver_due(now=timezone.now())

    assert mirror.labels_of("billing.reply") == {"production": 3, "latest": 3}
    assert [(method, path) for method, path, _ in mirror.writes][-1] == (
        "PATCH",
        "/api/public/v2/prompts/billing.reply/versions/3",
    )
    assert mirror_deliver_due(now=timezone.now()) == [], "in sync: nothing is due"
    assert shown_in_api(alice) == {"state": "in_sync", "reason": ""}


@pytest.mark.django_db
def test_chat_prompts_are_mirrored_as_chat_messages(alice, mirror):
    prompt_create(actor=actor_for(alice), name="billing.chat", kind="chat")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{question}}"}]
    version_create(actor=actor_for(alice), prompt_name="billing.chat", messages=messages)

    mirror_deliver_due(now=timezone.now())

    [created] = mirror.prompts["billing.chat"]
    assert (created["type"], created["prompt"], created["version"]) == ("chat", messages, 1)


@pytest.mark.django_db
def test_a_server_error_is_retried_with_backoff_and_the_registry_never_waits(alice, mirror):
    mirror.fail_status = 500
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    publish(alice, "Hi")  # the registry goes on while Langfuse fails
    now = timezone.now()

    [failed] = mirror_deliver_due(now=now)

    assert failed.outcome == "failed" and "answered HTTP 500" in failed.detail
    assert "Internal Server Error" not in failed.detail and mirror.secret_key not in failed.detail
    row = LangfuseMirror.objects.get()
    assert (row.attempts, row.due_at) == (1, now + timedelta(seconds=backoff_seconds(1)))
    assert shown_in_api(alice)["state"] == "retrying"
    assert mirror_deliver_due(now=now + timedelta(seconds=backoff_seconds(1) - 1)) == []

    mirror.fail_status = None
    [recovered] = mirror_deliver_due(now=now + timedelta(seconds=backoff_seconds(1)))

    assert recovered.outcome == "mirrored"
    assert mirrored(mirror) == [(1, "Hello"), (2, "Hi")]
    assert mirror.labels_of("billing.reply")["production"] == 1
    row.refresh_from_db()
    assert (row.attempts, row.last_error, row.due_at) == (0, "", None)


@pytest.mark.django_db
def test_a_version_langfuse_already_has_is_not_created_twice(alice, mirror):
    """An attempt whose answer was lost: Langfuse created v1; the retry only adds v2."""
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    mirror.add_prompt_version({"name": "billing.reply", "type": "text", "prompt": "Hello"})
    publish(alice, "Hi")

    mirror_deliver_due(now=timezone.now())

    assert mirrored(mirror) == [(1, "Hello"), (2, "Hi")]
    assert [path for method, path, _ in mirror.writes if method == "POST"] == ["/api/public/v2/prompts"]


@pytest.mark.django_db
def test_a_diverged_numbering_stops_the_mirror_for_that_prompt_and_says_why(
    alice, admin_user, mirror, client
):
    mirror.add_prompt_version({"name": "billing.reply", "prompt": "made in Langfuse"})
    mirror.add_prompt_version({"name": "billing.reply", "prompt": "also made in Langfuse"})
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    prompt_create(actor=actor_for(alice), name="support.answer")
    publish(alice, "Other", name="support.answer")

    attempts = {a.prompt: a for a in mirror_deliver_due(now=timezone.now())}

    stopped = attempts["billing.reply"]
    assert stopped.outcome == "stopped"
    assert (
        "Langfuse already has version 2" in stopped.detail
        and "number promptramp's next version 3" in stopped.detail
    )
    assert attempts["support.answer"].outcome == "mirrored", "other prompts are mirrored as before"
    assert mirrored(mirror) == [(1, "made in Langfuse"), (2, "also made in Langfuse")]
    assert shown_in_api(alice) == {"state": "stopped", "reason": stopped.detail}
    entry = AuditEntry.objects.get(action="langfuse_mirror.stop")
    assert (entry.prompt_name, entry.actor_name, entry.reason) == ("billing.reply", "system", stopped.detail)

    publish(alice, "Hello again")
    assert mirror_deliver_due(now=timezone.now()) == [], "a stopped prompt is no longer mirrored"
    assert len(mirror.prompts["billing.reply"]) == 2

    client.force_login(admin_user)
    page = client.get(
        f"/admin/registry/prompt/{LangfuseMirror.objects.get(stopped_reason__gt='').pk}/change/"
    )
    assert (
        "Langfuse mirror" in page.content.decode()
        and "Langfuse already has version 2" in page.content.decode()
    )


@pytest.mark.django_db
def test_a_langfuse_version_with_other_content_under_our_number_is_a_divergence(alice, mirror):
    mirror.add_prompt_version({"name": "billing.reply", "prompt": "made in Langfuse"})
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    publish(alice, "Hi")

    [stopped] = mirror_deliver_due(now=timezone.now())

    assert stopped.outcome == "stopped"
    assert "Langfuse's version 1 of 'billing.reply' is not promptramp's v1" in stopped.detail
    assert len(mirror.prompts["billing.reply"]) == 1


@pytest.mark.django_db
def test_refused_keys_are_named_without_showing_them(alice, mirror, settings):
    settings.LANGFUSE_SECRET_KEY = "sk-lf-wrong-secret"
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")

    [failed] = mirror_deliver_due(now=timezone.now())

    assert "refused the API keys (HTTP 401" in failed.detail
    assert "sk-lf-wrong-secret" not in failed.detail and mirror.public_key not in failed.detail


@pytest.mark.django_db
def test_nothing_is_marked_while_the_mirror_is_off(alice, langfuse):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")

    assert not LangfuseMirror.objects.exists()
    assert mirror_deliver_due(now=timezone.now()) == []
    assert shown_in_api(alice) is None


@pytest.mark.django_db(transaction=True)
def test_a_worker_on_the_outbound_queue_mirrors_a_new_version_once_it_commits(alice, mirror, celery_worker):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and mirror.labels_of("billing.reply").get("production") != 1:
        time.sleep(0.05)
    assert mirrored(mirror) == [(1, "Hello")]
    assert mirror.labels_of("billing.reply") == {"production": 1, "latest": 1}


@pytest.mark.django_db
def test_an_owner_resumes_a_stopped_mirror_from_the_admin_once_langfuse_is_put_right(
    alice, bob, mirror, client
):
    mirror.add_prompt_version({"name": "billing.reply", "prompt": "made in Langfuse"})
    mirror.add_prompt_version({"name": "billing.reply", "prompt": "also made in Langfuse"})
    prompt = prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    [stopped] = mirror_deliver_due(now=timezone.now())
    assert stopped.outcome == "stopped"
    resume = f"/admin/registry/prompt/{prompt.pk}/resume-langfuse-mirror/"

    bob.is_staff = True
    bob.save()
    client.force_login(bob)
    client.post(resume)
    assert shown_in_api(alice)["state"] == "stopped", "only owners or an admin resume it"

    client.force_login(alice)
    page = client.get(f"/admin/registry/prompt/{prompt.pk}/change/").content.decode()
    assert "Resume the Langfuse mirror" in page
    assert client.get(resume).status_code == 405
    del mirror.prompts["billing.reply"]  # someone removes the stray versions in Langfuse
    answer = client.post(resume)

    assert answer.status_code == 302
    assert shown_in_api(alice)["state"] == "pending"
    assert AuditEntry.objects.filter(action="langfuse_mirror.resume", actor_name="alice").exists()
    [attempt] = mirror_deliver_due(now=timezone.now())
    assert attempt.outcome == "mirrored"
    assert mirrored(mirror) == [(1, "Hello")]


def run_in_thread(work: Any) -> threading.Thread:
    def target() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_create_each_version_once(alice, mirror):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    for text in ("Hello", "Hi", "Dear"):
        publish(alice, text)
    mirror.delay_seconds = 0.1
    outcomes: list[Any] = []

    threads = [
        run_in_thread(lambda: outcomes.extend(mirror_deliver_due(now=timezone.now()))) for _ in range(2)
    ]
    for thread in threads:
        thread.join()

    assert [a.outcome for a in outcomes] == ["mirrored"], "the second worker finds the prompt claimed"
    assert mirrored(mirror) == [(1, "Hello"), (2, "Hi"), (3, "Dear")]
    assert len([w for w in mirror.writes if w[0] == "POST"]) == 3


@pytest.mark.django_db(transaction=True)
def test_a_version_created_while_its_prompt_is_mirrored_stays_due(alice, mirror):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    mirror.delay_seconds = 0.3
    worker = run_in_thread(lambda: mirror_deliver_due(now=timezone.now()))
    time.sleep(0.15)  # the worker is waiting for Langfuse

    publish(alice, "Hi")  # not blocked by the attempt in flight
    worker.join()

    assert LangfuseMirror.objects.get().due_at is not None
    mirror.delay_seconds = 0
    [attempt] = mirror_deliver_due(now=timezone.now())
    assert attempt.outcome == "mirrored"
    assert mirrored(mirror) == [(1, "Hello"), (2, "Hi")]


@pytest.mark.django_db
def test_a_redirect_is_a_failed_attempt_and_nothing_secret_is_logged(alice, mirror, caplog):
    mirror.fail_status = 302
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")

    with caplog.at_level("WARNING", logger="registry.langfuse_mirror"):
        [failed] = mirror_deliver_due(now=timezone.now())

    assert failed.outcome == "failed" and "answered HTTP 302" in failed.detail
    assert len(mirror.requests) == 1, "the redirect is not followed"
    logged = caplog.text
    assert "answered HTTP 302" in logged
    assert mirror.secret_key not in logged and "Internal Server Error" not in logged


def attempts_on_metrics(client: Any, outcome: str) -> float:
    text = client.get("/metrics").content.decode()
    [line] = [
        line
        for line in text.splitlines()
        if line.startswith(f'promptramp_langfuse_mirror_attempts_total{{outcome="{outcome}"}}')
    ]
    return float(line.split()[-1])


@pytest.mark.django_db
def test_metrics_count_the_mirrors_attempts_by_outcome(alice, mirror, client):
    before = {outcome: attempts_on_metrics(client, outcome) for outcome in ("mirrored", "failed")}
    mirror.fail_status = 503
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    now = timezone.now()
    mirror_deliver_due(now=now)
    mirror.fail_status = None
    mirror_deliver_due(now=now + timedelta(seconds=backoff_seconds(1)))

    assert attempts_on_metrics(client, "failed") == before["failed"] + 1
    assert attempts_on_metrics(client, "mirrored") == before["mirrored"] + 1
