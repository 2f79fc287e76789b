"""Registry events for webhooks (prompt.created, version.created, label.moved): written in the
transaction of the change, signed, filtered by subscription and retried like rollout events."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from core.errors import NotFound
from core.events import EVENTS, event_emit
from registry.services import label_move, prompt_create, version_create
from rollouts.models import Outbox, WebhookDelivery
from rollouts.services import rollout_create, rollout_promote
from rollouts.webhooks import EVENT_NAMES, backoff_seconds, outbox_deliver_due, webhook_create
from serving.services import override_create, override_delete
from tests.factories import actor_for


def subscribe(admin: Any, receiver: Any, events: list[str] | None = None) -> None:
    webhook_create(
        actor=actor_for(admin, admin=True), url=receiver.url, secret=receiver.secret, events=events
    )


def publish(owner: Any, template: str, labels: tuple[str, ...] = ()) -> Any:
    version, _ = version_create(
        actor=actor_for(owner), prompt_name="billing.reply", template=template, message="tone", labels=labels
    )
    return version


@pytest.mark.django_db
def test_each_registry_event_is_delivered_signed_with_a_slack_text(alice, webhook_receiver):
    subscribe(alice, webhook_receiver)
    prompt_create(actor=actor_for(alice), name="billing.reply", kind="text")
    publish(alice, "Hello {{name}}")  # v1 takes production
    publish(alice, "Hi {{name}}", labels=("staging",))
    label_move(
        actor=actor_for(alice), prompt_name="billing.reply", label="production", version=2, reason="better"
    )

    attempts = outbox_deliver_due(now=timezone.now())

    assert all(a.succeeded for a in attempts)
    received = webhook_receiver.received
    assert all(r.signature_valid for r in received)
    bodies = [r.json() for r in received]
    assert [(b["event"], b.get("version"), b.get("label"), b.get("to_version")) for b in bodies] == [
        ("prompt.created", None, None, None),
        ("version.created", 1, None, None),
        ("label.moved", None, "production", 1),
        ("version.created", 2, None, None),
        ("label.moved", None, "staging", 2),
        ("label.moved", None, "production", 2),
    ]
    assert [r.headers["X-Promptramp-Event"] for r in received] == [b["event"] for b in bodies]
    assert all(b["prompt"] == "billing.reply" and b["actor"] == "alice" for b in bodies)
    assert all(b["at"].endswith("Z") for b in bodies)
    assert bodies[0]["text"] == "promptramp: prompt billing.reply (text) created by alice"
    assert bodies[3]["text"] == "promptramp: billing.reply v2 published by alice: tone"
    assert bodies[3]["content_hash"] and bodies[3]["message"] == "tone"
    assert (
        bodies[5]["text"] == "promptramp: billing.reply label production moved from v1 to v2 by alice: better"
    )
    assert (bodies[5]["from_version"], bodies[5]["reason"]) == (1, "better")


@pytest.mark.django_db
def test_webhooks_receive_only_the_registry_events_they_subscribed_to(alice, webhook_receiver):
    subscribe(alice, webhook_receiver, events=["label.moved"])
    subscribe(alice, webhook_receiver, events=["rollout.succeeded"])
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")

    assert list(Outbox.objects.values_list("event", flat=True)) == ["label.moved"]
    outbox_deliver_due(now=timezone.now())
    assert [r.json()["event"] for r in webhook_receiver.received] == ["label.moved"]


@pytest.mark.django_db
def test_a_label_set_again_to_the_same_version_is_not_an_event(alice, webhook_receiver):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    subscribe(alice, webhook_receiver)

    label_move(actor=actor_for(alice), prompt_name="billing.reply", label="production", version=1)
    publish(alice, "Hello")  # same content: no new version

    assert not Outbox.objects.exists()


@pytest.mark.django_db
def test_a_failing_receiver_gets_the_same_signed_event_again_after_the_backoff(alice, webhook_receiver):
    webhook_receiver.statuses = [500]
    subscribe(alice, webhook_receiver, events=["prompt.created"])
    prompt_create(actor=actor_for(alice), name="billing.reply")
    now = timezone.now()

    [failed] = outbox_deliver_due(now=now)
    assert outbox_deliver_due(now=now + timedelta(seconds=backoff_seconds(1) - 1)) == []
    [succeeded] = outbox_deliver_due(now=now + timedelta(seconds=backoff_seconds(1)))

    assert (failed.status_code, failed.succeeded, succeeded.status_code, succeeded.succeeded) == (
        500,
        False,
        204,
        True,
    )
    first, second = webhook_receiver.received
    assert first.body == second.body and second.signature_valid
    assert list(WebhookDelivery.objects.values_list("attempt", flat=True)) == [1, 2]
    assert Outbox.objects.get().delivered_at is not None


@pytest.mark.django_db
def test_a_change_that_fails_leaves_no_event_behind(alice, webhook_receiver):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello")
    subscribe(alice, webhook_receiver)

    with pytest.raises(NotFound):
        label_move(actor=actor_for(alice), prompt_name="billing.reply", label="staging", version=7)
    with pytest.raises(RuntimeError), transaction.atomic():
        publish(alice, "Hello again")
        raise RuntimeError("the caller's transaction fails after the version")

    assert not Outbox.objects.exists()


@pytest.mark.django_db
def test_the_api_accepts_registry_events_in_a_subscription(admin_user, client_with_key):
    client = client_with_key(admin_user, "read,write,admin")
    answer = client.post(
        "/api/v1/webhooks",
        {
            "url": "https://hooks.example.com/x",
            "secret": "s3cret-xx",
            "events": ["version.created", "label.moved"],
        },
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["events"] == ["label.moved", "version.created"]


def test_every_followed_event_can_be_subscribed_to_and_no_other_can_be_emitted():
    assert set(EVENTS) <= set(EVENT_NAMES)
    with pytest.raises(ValueError, match="not an event"):
        event_emit(name="prompt.renamed", text="", prompt="x", data={})


@pytest.mark.django_db(transaction=True)
def test_a_worker_delivers_a_new_version_once_the_change_commits(alice, webhook_receiver, celery_worker):
    prompt_create(actor=actor_for(alice), name="billing.reply")
    subscribe(alice, webhook_receiver, events=["version.created"])

    publish(alice, "Hello")

    [received] = webhook_receiver.wait_for(1)
    assert received.signature_valid
    assert json.loads(received.body)["version"] == 1


@pytest.mark.django_db
def test_a_rollout_that_succeeds_announces_its_production_move(alice, prompt, webhook_receiver):
    subscribe(alice, webhook_receiver, events=["label.moved", "rollout.succeeded"])
    plan = [
        {"percent": 10, "min_duration_s": 0, "min_samples": 0},
        {"percent": 100, "min_duration_s": 0, "min_samples": 0},
    ]
    rollout = rollout_create(
        actor=actor_for(alice), prompt_name="support.answer", candidate_version=2, plan=plan
    )
    for _ in range(2):
        rollout_promote(actor=actor_for(alice), rollout_id=rollout.pk)

    outbox_deliver_due(now=timezone.now())

    bodies = {r.json()["event"]: r.json() for r in webhook_receiver.received}
    assert sorted(bodies) == ["label.moved", "rollout.succeeded"]
    moved = bodies["label.moved"]
    assert (moved["label"], moved["from_version"], moved["to_version"]) == ("production", 1, 2)


@pytest.mark.django_db
def test_adding_and_ending_an_override_is_announced_as_override_changed(alice, webhook_receiver):
    subscribe(alice, webhook_receiver, events=["override.changed"])
    prompt_create(actor=actor_for(alice), name="billing.reply")
    publish(alice, "Hello {{name}}")
    publish(alice, "Hi {{name}}")
    override = override_create(
        actor=actor_for(alice), prompt_name="billing.reply", match={"unit": "qa-7"}, version=2, reason="QA"
    )
    override_delete(actor=actor_for(alice), prompt_name="billing.reply", override_id=override.pk)

    outbox_deliver_due(now=timezone.now())

    received = webhook_receiver.received
    assert all(r.signature_valid for r in received)
    bodies = [r.json() for r in received]
    assert [(b["event"], b["change"], b["override_id"], b["version"]) for b in bodies] == [
        ("override.changed", "added", override.pk, 2),
        ("override.changed", "ended", override.pk, 2),
    ]
    assert bodies[0]["match"] == {"unit": "qa-7"} and bodies[0]["reason"] == "QA"
    assert (
        bodies[0]["text"]
        == f"promptramp: billing.reply override {override.pk} (unit qa-7 → v2) added by alice: QA"
    )
