"""Webhooks: who is told about rollout transitions, what they are sent, and the delivery.

Every transition writes one outbox row per interested webhook in its own transaction
(`outbox_enqueue`); `outbox_deliver_due` (a Celery task, kicked after each transition and run by
beat) sends them. A message is a JSON POST whose ``text`` reads well in Slack, signed:

    X-Promptramp-Timestamp: <unix seconds>
    X-Promptramp-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

A failed attempt (no answer, or a status outside 2xx) is retried with exponential backoff, up to
`MAX_ATTEMPTS`; every attempt is recorded as a `WebhookDelivery`. Delivery is at least once: a
worker that dies mid-send leaves the message claimed for `CLAIM_SECONDS`, then it is sent again
(receivers may de-duplicate on ``X-Promptramp-Delivery``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from celery import current_app
from django.db import transaction
from django.db.models import Q

from audit.actions import AuditAction
from audit.services import audit_record
from core.actors import Actor
from core.errors import ValidationFailed
from core.outbound import safe_url
from rollouts.as_json import rollout_json, transition_json
from rollouts.errors import WebhookNotFound
from rollouts.figures import percent_value
from rollouts.models import Outbox, Rollout, RolloutTransition, Webhook, WebhookDelivery

EVENTS = ("started", "advanced", "paused", "resumed", "succeeded", "rolled_back", "aborted")
EVENT_NAMES = tuple(f"rollout.{event}" for event in EVENTS)
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 3600.0
CLAIM_SECONDS = 60.0
TIMEOUT_SECONDS = 5.0
DELIVERY_BATCH = 100
DELIVER_TASK = "rollouts.deliver_webhooks"


# --- webhooks -------------------------------------------------------------------------------


def _validate_url(url: object) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise ValidationFailed("'url' must be an http or https URL of at most 2,000 characters.")
    if not _is_http_url(url):
        raise ValidationFailed("'url' must be an http or https URL.", details={"url": url})
    return url


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError unless absent or a number within 0-65535
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def _validate_events(events: object) -> list[str]:
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValidationFailed("'events' must be a list of event names.")
    unknown = sorted(set(events) - set(EVENT_NAMES))
    if unknown:
        raise ValidationFailed(
            f"Unknown events; known: {', '.join(EVENT_NAMES)}.", details={"events": unknown}
        )
    return sorted(set(events))


def webhook_create(*, actor: Actor, url: object, secret: object, events: object = None) -> Webhook:
    clean_url = _validate_url(url)
    if not isinstance(secret, str) or not 8 <= len(secret) <= 256:
        raise ValidationFailed("'secret' must be a string of 8 to 256 characters.")
    clean_events = _validate_events(events)
    with transaction.atomic():
        webhook = Webhook.objects.create(
            url=clean_url, secret=secret, events=clean_events, created_by_id=actor.user_id
        )
        audit_record(
            actor=actor,
            action=AuditAction.WEBHOOK_CREATE,
            object_type="webhook",
            object_id=webhook.pk,
            data={"url": safe_url(clean_url), "events": clean_events},
        )
    return webhook


def webhook_delete(*, actor: Actor, webhook_id: int) -> None:
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update().filter(pk=webhook_id).first()
        if webhook is None:
            raise WebhookNotFound(f"Webhook {webhook_id} does not exist.")
        audit_record(
            actor=actor,
            action=AuditAction.WEBHOOK_DELETE,
            object_type="webhook",
            object_id=webhook.pk,
            data={"url": safe_url(webhook.url)},
        )
        webhook.delete()


# --- messages -------------------------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def message_text(rollout: Rollout, transition: RolloutTransition) -> str:
    """One line for a chat channel: what happened to which rollout, at what percent, why."""
    headline = {
        "started": f"started at {percent_value(transition.percent)}%",
        "advanced": f"advanced to {percent_value(transition.percent)}%",
        "paused": f"paused at {percent_value(transition.percent)}%",
        "resumed": f"resumed at {percent_value(transition.percent)}%",
        "succeeded": f"succeeded: v{rollout.candidate.version} is now production",
        "rolled_back": f"rolled back: every user is back on v{rollout.baseline.version}",
        "aborted": f"aborted: every user is back on v{rollout.baseline.version}",
    }[transition.event]
    text = (
        f"promptramp: {rollout.prompt.name} rollout #{rollout.pk} "
        f"(v{rollout.baseline.version} → v{rollout.candidate.version}) {headline}"
        f" — by {transition.actor_name}"
    )
    return f"{text}: {transition.reason}" if transition.reason else text


def message_body(rollout: Rollout, transition: RolloutTransition) -> dict[str, Any]:
    return {
        "event": f"rollout.{transition.event}",
        "text": message_text(rollout, transition),
        "rollout": rollout_json(rollout),
        "transition": transition_json(transition),
    }


def outbox_enqueue(*, rollout: Rollout, transition: RolloutTransition) -> int:
    """Queue the transition's message for every interested webhook, in the caller's transaction.
    Returns how many were queued; delivery is kicked once the transaction commits."""
    event = f"rollout.{transition.event}"
    webhooks = Webhook.objects.filter(Q(events=[]) | Q(events__contains=[event]))
    body = json.dumps(message_body(rollout, transition), separators=(",", ":"), sort_keys=True)
    rows = Outbox.objects.bulk_create(
        Outbox(webhook=webhook, rollout=rollout, event=event, body=body, next_attempt_at=transition.at)
        for webhook in webhooks
    )
    if rows:
        transaction.on_commit(lambda: current_app.send_task(DELIVER_TASK))
    return len(rows)


# --- delivery -------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Wait before the next try after ``attempts`` failed ones: 10 s, 20 s, 40 s … at most 1 h."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempts - 1))


def _claim(now: datetime, limit: int) -> list[Outbox]:
    """Take due messages for this worker: they are not due again for CLAIM_SECONDS."""
    with transaction.atomic():
        due = list(
            Outbox.objects.select_for_update(skip_locked=True)
            .filter(delivered_at__isnull=True, gave_up_at__isnull=True, next_attempt_at__lte=now)
            .select_related("webhook")
            .order_by("next_attempt_at", "id")[:limit]
        )
        Outbox.objects.filter(pk__in=[m.pk for m in due]).update(
            next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)
        )
    return due


def _post(message: Outbox) -> tuple[int | None, str, float]:
    """Send once: (status code or None, error or "", duration in ms)."""
    body = message.body.encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "promptramp-webhooks",
        "X-Promptramp-Event": message.event,
        "X-Promptramp-Delivery": str(message.pk),
        "X-Promptramp-Timestamp": timestamp,
        "X-Promptramp-Signature": sign(message.webhook.secret, timestamp, body),
    }
    started = time.monotonic()
    try:
        response = requests.post(
            message.webhook.url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
        )
    except requests.RequestException as failure:
        return None, f"{type(failure).__name__}: {failure}"[:1000], (time.monotonic() - started) * 1000
    duration = (time.monotonic() - started) * 1000
    refused = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return response.status_code, refused, duration


def _record(
    message: Outbox, status: int | None, error: str, duration_ms: float, now: datetime
) -> WebhookDelivery:
    attempt = message.attempts + 1
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            outbox=message,
            attempt=attempt,
            at=now,
            status_code=status,
            error=error,
            duration_ms=duration_ms,
            succeeded=not error,
        )
        changes: dict[str, Any] = {"attempts": attempt}
        if not error:
            changes["delivered_at"] = now
        elif attempt >= MAX_ATTEMPTS:
            changes["gave_up_at"] = now
        else:
            changes["next_attempt_at"] = now + timedelta(seconds=backoff_seconds(attempt))
        Outbox.objects.filter(pk=message.pk, delivered_at__isnull=True).update(**changes)
    return delivery


def outbox_deliver_due(*, now: datetime, limit: int = DELIVERY_BATCH) -> Sequence[WebhookDelivery]:
    """Send every message due at ``now`` (up to ``limit``); returns the attempts made."""
    attempts = []
    for message in _claim(now, limit):
        status, error, duration = _post(message)
        attempts.append(_record(message, status, error, duration, now))
    return attempts
