"""Webhooks: who is told about rollout transitions, ``rollout.checks_requested`` and registry
events, what they are sent, and the delivery.

Every transition writes one outbox row per interested webhook in its own transaction
(`outbox_enqueue_transitions`, which takes a controller evaluation's transitions at once), and
so does every event of ``core.events`` (`outbox_enqueue_event`, a follower in
``settings.PROMPTRAMP_EVENT_FOLLOWERS``: the registry emits them without importing this module);
`outbox_deliver_due` (a Celery task, kicked after each transaction that queued messages and run
by beat) sends them. A message is a JSON POST whose ``text`` reads well in Slack, signed:

    X-Promptramp-Timestamp: <unix seconds>
    X-Promptramp-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

A failed attempt (no answer, or a status outside 2xx) is retried with exponential backoff, up to
`MAX_ATTEMPTS`; every attempt is recorded as a `WebhookDelivery` and counted in
`promptramp_webhook_deliveries_total` by result. Delivery is at least once: each
message is claimed just before it is sent, for `CLAIM_SECONDS` (longer than a send can take), so
another worker never sends it while this one is; a worker that dies mid-send leaves it claimed
until then, and it is sent again (receivers may de-duplicate on ``X-Promptramp-Delivery``). A
run stops claiming after `RUN_SECONDS`, so it ends within the outbound queue's time limit.

Webhook URLs are chosen by people, so they must lead to public addresses: a URL whose name
resolves to a loopback, private, link-local or unique-local address is refused at creation, and
again at each delivery, which connects to the address it checked (`core.outbound`, which also
follows no redirect, reads at most 1 MiB and stops at `TIMEOUT_SECONDS`) —
unless ``PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE`` (receivers on the operator's own network).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from audit.actions import AuditAction
from audit.services import audit_record
from core import outbound
from core.actors import Actor
from core.cluster_metrics import SharedCounter, record, shared
from core.errors import ValidationFailed
from core.events import EVENTS as FOLLOWED_EVENTS
from core.events import Event
from core.outbound import safe_url
from rollouts.as_json import rollout_json, shadow_percent, transition_json
from rollouts.errors import WebhookNotFound
from rollouts.figures import percent_value
from rollouts.models import Outbox, Rollout, RolloutTransition, Webhook, WebhookDelivery
from rollouts.plan import OBSERVE

EVENTS = ("started", "advanced", "paused", "resumed", "succeeded", "rolled_back", "aborted")
CHECKS_REQUESTED = "rollout.checks_requested"  # at creation, to a rollout with required checks
EVENT_NAMES = (*(f"rollout.{event}" for event in EVENTS), CHECKS_REQUESTED, *FOLLOWED_EVENTS)
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 3600.0
TIMEOUT_SECONDS = 5.0
CLAIM_SECONDS = 60.0  # > TIMEOUT_SECONDS plus recording the attempt
RUN_SECONDS = 60.0  # a run claims no message after this; it ends by RUN_SECONDS + CLAIM_SECONDS
DELIVERY_BATCH = 100
DELIVER_TASK = "rollouts.deliver_webhooks"
DELIVERIES = shared(
    SharedCounter(
        "promptramp_webhook_deliveries",
        "Webhook delivery attempts by result: delivered, failed (to be retried), gave_up.",
        ("result",),
        known=(("delivered",), ("failed",), ("gave_up",)),
    )
)


# --- webhooks -------------------------------------------------------------------------------


def _validate_url(url: object) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise ValidationFailed("'url' must be an http or https URL of at most 2,000 characters.")
    if not outbound.is_http_url(url):
        raise ValidationFailed("'url' must be an http or https URL.", details={"url": url})
    if not settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE:
        try:
            outbound.resolve(url, public_only=True)
        except outbound.OutboundError as refused:
            raise ValidationFailed(
                f"'url' must lead to a public address: {refused}.", details={"url": outbound.safe_url(url)}
            ) from None
    return url


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
    """One line for a chat channel: what happened to which rollout, at what percent, why, and
    the verdicts of the gates and the traffic check that decided it."""
    shadow = shadow_percent(rollout.plan, transition.step_index, transition.to_state)
    share = f"{percent_value(transition.percent)}%" if shadow is None else f"shadow {shadow}%"
    headline = {
        "started": f"started at {share}",
        "advanced": f"advanced to {share}",
        "paused": f"paused at {share}",
        "resumed": f"resumed at {share}",
        "succeeded": f"succeeded: v{rollout.candidate.version} is now production",
        "rolled_back": f"rolled back: every user is back on v{rollout.baseline.version}",
        "aborted": f"aborted: every user is back on v{rollout.baseline.version}",
    }[transition.event]
    text = (
        f"promptramp: {rollout.prompt.name} rollout #{rollout.pk} "
        f"(v{rollout.baseline.version} → v{rollout.candidate.version}) {headline}"
        f" — by {transition.actor_name}"
    )
    text = f"{text}: {transition.reason}" if transition.reason else text
    return f"{text} [{verdicts_text(transition.verdicts)}]" if transition.verdicts else text


def verdicts_text(verdicts: list[dict[str, Any]]) -> str:
    """``error_rate pass, traffic fail, score:tone fail (observe only)``: each verdict as the
    engine listed it."""
    return ", ".join(
        f"{verdict['metric']} {verdict['verdict']}"
        + (" (observe only)" if verdict.get("on_fail") == OBSERVE else "")
        for verdict in verdicts
    )


def message_body(rollout: Rollout, transition: RolloutTransition) -> dict[str, Any]:
    return {
        "event": f"rollout.{transition.event}",
        "text": message_text(rollout, transition),
        "rollout": rollout_json(rollout),
        "transition": transition_json(transition),
    }


def checks_requested_body(rollout: Rollout) -> dict[str, Any]:
    """What CI is sent when a rollout waits for its required checks: which, and where to report."""
    shown = rollout_json(rollout)
    names = shown["required_checks"]
    report_path = f"/api/v1/rollouts/{rollout.pk}/checks"
    return {
        "event": CHECKS_REQUESTED,
        "text": (
            f"promptramp: {rollout.prompt.name} rollout #{rollout.pk} "
            f"(v{rollout.baseline.version} → v{rollout.candidate.version}) waits for required checks: "
            f"{', '.join(names)} — report each with POST {report_path}"
        ),
        "rollout": shown,
        "required_checks": names,
        "report_path": report_path,
    }


def outbox_enqueue_transitions(*, transitions: Sequence[RolloutTransition]) -> int:
    """Queue each transition's message for every interested webhook, in the caller's transaction
    (one read of the webhooks and one insert, however many transitions). Returns how many were
    queued; delivery is kicked once the transaction commits."""
    return _enqueue(
        [
            _Message(f"rollout.{t.event}", partial(message_body, t.rollout, t), t.at, t.rollout)
            for t in transitions
        ]
    )


def outbox_enqueue_checks_requested(*, rollout: Rollout, now: datetime) -> int:
    """Queue ``rollout.checks_requested`` for every interested webhook, in the caller's transaction."""
    return _enqueue([_Message(CHECKS_REQUESTED, partial(checks_requested_body, rollout), now, rollout)])


def outbox_enqueue_event(event: Event) -> None:
    """Queue a ``core.events`` event for every webhook subscribed to it (all events when it names
    none), in the transaction that emits it."""
    _enqueue([_Message(event.name, event.body, event.at, None)])


class _Message(NamedTuple):
    event: str
    body: Callable[[], dict[str, Any]]  # called only when a webhook wants the event (reads the rollout)
    at: datetime
    rollout: Rollout | None


def _enqueue(messages: Sequence[_Message]) -> int:
    """One outbox row per message and webhook that wants its event, in order."""
    events = sorted({message.event for message in messages})
    webhooks = list(Webhook.objects.filter(Q(events=[]) | Q(events__overlap=events)))
    rows = []
    for event, body, at, rollout in messages:
        wanted = [webhook for webhook in webhooks if not webhook.events or event in webhook.events]
        if wanted:
            text = json.dumps(body(), separators=(",", ":"), sort_keys=True)
            rows += [
                Outbox(webhook=webhook, rollout=rollout, event=event, body=text, next_attempt_at=at)
                for webhook in wanted
            ]
    if rows:
        Outbox.objects.bulk_create(rows)
        transaction.on_commit(lambda: current_app.send_task(DELIVER_TASK))
    return len(rows)


# --- delivery -------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Wait before the next try after ``attempts`` failed ones: 10 s, 20 s, 40 s … at most 1 h."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempts - 1))


def _claim_one(now: datetime, until: datetime) -> Outbox | None:
    """Take the next message due at ``now`` for this worker: it is not due again before ``until``."""
    with transaction.atomic():
        message = (
            Outbox.objects.select_for_update(skip_locked=True)
            .filter(delivered_at__isnull=True, gave_up_at__isnull=True, next_attempt_at__lte=now)
            .select_related("webhook")
            .order_by("next_attempt_at", "id")
            .first()
        )
        if message is not None:
            Outbox.objects.filter(pk=message.pk).update(next_attempt_at=until)
    return message


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
        reply = outbound.post(
            message.webhook.url,
            body,
            headers,
            deadline_seconds=TIMEOUT_SECONDS,
            public_only=not settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE,
        )
    except outbound.OutboundError as failure:
        return None, str(failure)[:1000], (time.monotonic() - started) * 1000
    duration = (time.monotonic() - started) * 1000
    refused = "" if 200 <= reply.status < 300 else f"HTTP {reply.status}"
    return reply.status, refused, duration


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
    """Send the messages due at ``now``, one claim each (up to ``limit``, claiming none after
    RUN_SECONDS); returns the attempts made."""
    attempts: list[WebhookDelivery] = []
    started = time.monotonic()
    while len(attempts) < limit and time.monotonic() - started < RUN_SECONDS:
        # The claim lasts CLAIM_SECONDS from the moment it is taken (``now`` as time passes).
        until = now + timedelta(seconds=time.monotonic() - started + CLAIM_SECONDS)
        message = _claim_one(now, until)
        if message is None:
            break
        status, error, duration = _post(message)
        delivery = _record(message, status, error, duration, now)
        attempts.append(delivery)
        gave_up = delivery.attempt >= MAX_ATTEMPTS
        result = "delivered" if delivery.succeeded else "gave_up" if gave_up else "failed"
        record([DELIVERIES.by(result)])  # committed: _record's transaction is its own
    return attempts
