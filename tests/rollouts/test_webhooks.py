"""Webhooks: signed JSON POSTs with a Slack-compatible text, delivered from the outbox with retries
and backoff, each attempt recorded; configured by admins only, secrets never shown."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from rollouts.models import Outbox, Webhook, WebhookDelivery
from rollouts.services import rollout_create
from rollouts.webhooks import MAX_ATTEMPTS, backoff_seconds, outbox_deliver_due, webhook_create
from tests.factories import actor_for

PLAN = [
    {"percent": 10, "min_duration_s": 0, "min_samples": 0},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


def start_rollout(owner: Any) -> Any:
    return rollout_create(
        actor=actor_for(owner), prompt_name="support.answer", candidate_version=2, plan=PLAN
    )


@pytest.mark.django_db
def test_transition_is_posted_signed_with_a_slack_text(alice, prompt, webhook_receiver):
    webhook_create(
        actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret=webhook_receiver.secret
    )
    rollout = start_rollout(alice)
    attempts = outbox_deliver_due(now=timezone.now())
    assert [(a.status_code, a.succeeded) for a in attempts] == [(204, True)]
    [received] = webhook_receiver.received
    assert received.signature_valid
    assert abs(int(received.headers["X-Promptramp-Timestamp"]) - time.time()) < 60
    body = received.json()
    assert body["event"] == "rollout.started"
    assert body["text"].startswith(
        f"promptramp: support.answer rollout #{rollout.pk} (v1 → v2) started at 10%"
    )
    assert body["rollout"]["id"] == rollout.pk
    assert body["transition"]["to_state"] == "running"
    assert Outbox.objects.get().delivered_at is not None


@pytest.mark.django_db
def test_a_message_shows_the_rollout_and_its_transition_as_the_api_does(alice, prompt, client_with_key):
    webhook_create(actor=actor_for(alice, admin=True), url="https://hooks.example.com/x", secret="s3cret-xx")
    rollout = start_rollout(alice)

    message = json.loads(Outbox.objects.get().body)

    shown = client_with_key(alice, "read").get(f"/api/v1/rollouts/{rollout.pk}").json()
    assert message["transition"] == shown["history"][-1]
    assert message["rollout"] == {key: shown[key] for key in message["rollout"]}
    assert {"id", "prompt", "baseline_version", "candidate_version", "state", "step_index", "percent"} <= set(
        message["rollout"]
    )


@pytest.mark.django_db
def test_a_wrong_secret_fails_verification_and_is_retried_with_backoff(alice, prompt, webhook_receiver):
    webhook_create(actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret="another-secret")
    start_rollout(alice)
    now = timezone.now()
    [attempt] = outbox_deliver_due(now=now)
    assert (attempt.status_code, attempt.succeeded, attempt.error) == (401, False, "HTTP 401")
    assert not webhook_receiver.received[0].signature_valid
    message = Outbox.objects.get()
    assert message.delivered_at is None
    assert message.next_attempt_at == now + timedelta(seconds=backoff_seconds(1))
    assert outbox_deliver_due(now=now + timedelta(seconds=1)) == []


@pytest.mark.django_db
def test_failed_deliveries_back_off_exponentially_then_succeed(alice, prompt, webhook_receiver):
    webhook_receiver.statuses = [500, 503]
    webhook_create(
        actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret=webhook_receiver.secret
    )
    start_rollout(alice)
    now = timezone.now()
    outbox_deliver_due(now=now)
    now += timedelta(seconds=backoff_seconds(1))
    outbox_deliver_due(now=now)
    assert outbox_deliver_due(now=now + timedelta(seconds=backoff_seconds(2) - 1)) == []
    outbox_deliver_due(now=now + timedelta(seconds=backoff_seconds(2)))
    rows = list(
        WebhookDelivery.objects.order_by("attempt").values_list("attempt", "status_code", "succeeded")
    )
    assert rows == [(1, 500, False), (2, 503, False), (3, 204, True)]
    assert all(d.duration_ms >= 0 for d in WebhookDelivery.objects.all())
    assert backoff_seconds(2) == 2 * backoff_seconds(1)
    bodies = {r.body for r in webhook_receiver.received}
    assert len(bodies) == 1, "every retry sends the same body"


@pytest.mark.django_db
def test_an_unreachable_url_is_recorded_and_given_up_after_the_last_attempt(alice, prompt):
    webhook_create(actor=actor_for(alice, admin=True), url="http://127.0.0.1:9/nothing", secret="x" * 16)
    start_rollout(alice)
    now = timezone.now()
    for _ in range(MAX_ATTEMPTS):
        outbox_deliver_due(now=now)
        now += timedelta(hours=2)
    message = Outbox.objects.get()
    assert message.gave_up_at is not None and message.attempts == MAX_ATTEMPTS
    attempt = WebhookDelivery.objects.first()
    assert attempt.status_code is None and "could not connect" in attempt.error


@pytest.mark.django_db
def test_webhooks_receive_only_the_events_they_asked_for(alice, prompt, webhook_receiver):
    webhook_create(
        actor=actor_for(alice, admin=True),
        url=webhook_receiver.url,
        secret=webhook_receiver.secret,
        events=["rollout.rolled_back"],
    )
    start_rollout(alice)
    assert not Outbox.objects.exists()


@pytest.mark.django_db
def test_webhooks_api_needs_admin_and_never_returns_the_secret(alice, admin_user, client_with_key):
    body = {"url": "https://hooks.example.com/promptramp", "secret": "top-secret-value"}
    writer, admin = client_with_key(alice, "read,write"), client_with_key(admin_user, "admin")
    assert writer.post("/api/v1/webhooks", body, format="json").status_code == 403
    created = admin.post("/api/v1/webhooks", body, format="json")
    assert created.status_code == 201
    assert "secret" not in created.json()
    listed = admin.get("/api/v1/webhooks").json()
    assert listed["count"] == 1 and "top-secret-value" not in str(listed)
    assert admin.get("/api/v1/webhooks/999").status_code == 404
    assert admin.delete(f"/api/v1/webhooks/{created.json()['id']}").status_code == 204
    assert admin.get("/api/v1/webhooks").json()["count"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x", "secret": "long-enough"},
        {"url": "file:///etc/passwd", "secret": "long-enough"},
        {"url": "https://", "secret": "long-enough"},
        {"url": "http://[::1", "secret": "long-enough"},
        {"url": "http://[not-an-address]/", "secret": "long-enough"},
        {"url": "http://example.com:99999/", "secret": "long-enough"},
        {"url": "http://example.com:port/", "secret": "long-enough"},
        {"url": "http://example.com:0/", "secret": "long-enough"},
        {"url": "https://example.com", "secret": "short"},
        {"url": "https://example.com", "secret": "long-enough", "events": ["rollout.exploded"]},
        {"url": "https://example.com"},
    ],
)
def test_invalid_webhooks_are_refused(admin_user, client_with_key, body):
    response = client_with_key(admin_user, "admin").post("/api/v1/webhooks", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert not Webhook.objects.exists()


@pytest.mark.django_db
def test_a_rollout_started_in_a_shadow_step_says_so(alice, prompt, webhook_receiver):
    webhook_create(
        actor=actor_for(alice, admin=True), url=webhook_receiver.url, secret=webhook_receiver.secret
    )
    rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=[{"shadow": True, "percent": 30, "min_duration_s": 0, "min_samples": 0}, *PLAN],
    )

    outbox_deliver_due(now=timezone.now())

    [received] = webhook_receiver.received
    body = received.json()
    assert "(v1 → v2) started at shadow 30%" in body["text"]
    assert (body["rollout"]["percent"], body["rollout"]["shadow_percent"]) == (0, 30)
    assert body["transition"]["shadow_percent"] == 30
