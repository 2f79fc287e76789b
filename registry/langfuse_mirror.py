"""The Langfuse mirror (``PROMPTRAMP_LANGFUSE_MIRROR=1``): every version of a prompt is created in
Langfuse prompt management under the same name with the same number, and ``production`` points
at the same version there, so that Langfuse's traces link to the versions promptramp serves.

It follows the events of ``core.events`` (`mirror_follow`, in ``PROMPTRAMP_EVENT_FOLLOWERS``):
a ``version.created`` or a ``production`` move marks the prompt's `LangfuseMirror` row due, in
the transaction of the change (the outbox pattern). `mirror_deliver_due` (a Celery task on the
``outbound`` queue, kicked after the change and run by beat) then brings Langfuse up to date with
the registry — not event by event but prompt by prompt, so a retry after a lost answer, or after
versions created while Langfuse was down, creates each missing version once and in order:

1. ask Langfuse for the prompt's ``latest`` version (none: the prompt is new there);
2. if Langfuse holds a version promptramp does not (its latest is above ours) or its latest is
   not ours (another content under that number), the numbering has diverged: the mirror stops for
   the prompt, says why (``stopped_reason``, shown in the admin and the API, and audited);
3. create each of our versions above Langfuse's latest, checking that Langfuse gave it our number;
4. point Langfuse's ``production`` label at our production version when it points elsewhere.

A failed attempt (no answer, an error status) is retried with backoff; the registry never waits
for Langfuse. Every call goes through ``core.outbound`` (no redirects, a total deadline, 1 MiB);
errors name the step and the status, never a reply's body or a key.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from audit.actions import AuditAction
from audit.services import audit_record
from core import outbound
from core.actors import Actor
from core.cluster_metrics import SharedCounter, record, shared
from core.errors import Conflict
from core.events import Event
from registry.models import PRODUCTION, Label, LangfuseMirror, Prompt, PromptVersion
from registry.selectors import prompt_get
from registry.services import ensure_owner

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://cloud.langfuse.com"  # the langfuse SDK's default
MIRROR_TASK = "registry.mirror_langfuse"
TIMEOUT_SECONDS = outbound.DEADLINE_SECONDS
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 3600.0
CLAIM_SECONDS = 120.0  # > a whole attempt (RUN_SECONDS plus one call)
RUN_SECONDS = 60.0  # a run claims nothing, and an attempt creates no version, after this
BATCH = 100
OUTCOMES = ("mirrored", "partial", "failed", "stopped")
ATTEMPTS = shared(
    SharedCounter(
        "promptramp_langfuse_mirror_attempts",
        "Langfuse mirror attempts by outcome: mirrored, partial (due again), failed (retried), stopped.",
        ("outcome",),
        known=tuple((outcome,) for outcome in OUTCOMES),
    )
)


class MirrorFailed(Exception):
    """This attempt did not get through; the message is safe to store and show."""


class MirrorDiverged(Exception):
    """Langfuse's numbering is not promptramp's: the mirror stops for the prompt."""


@dataclass(frozen=True)
class MirrorAttempt:
    prompt: str
    outcome: str  # one of OUTCOMES: "partial" when time ran out (due again)
    detail: str = ""


# --- marking -----------------------------------------------------------------------------------


def mirror_follow(event: Event) -> None:
    """A follower of ``core.events``: a new version or a ``production`` move marks its prompt due."""
    if not settings.PROMPTRAMP_LANGFUSE_MIRROR:
        return
    if event.name == "version.created" or (
        event.name == "label.moved" and event.data.get("label") == PRODUCTION
    ):
        mirror_mark_due(prompt_name=event.prompt, at=event.at)


def mirror_mark_due(*, prompt_name: str, at: datetime) -> None:
    """Mark the prompt to be mirrored, in the caller's transaction; kick the task on commit."""
    prompt_id = Prompt.objects.values_list("pk", flat=True).get(name=prompt_name)
    LangfuseMirror.objects.get_or_create(prompt_id=prompt_id)
    marked = LangfuseMirror.objects.filter(prompt_id=prompt_id, stopped_reason="").update(
        changes=F("changes") + 1, due_at=at
    )
    if marked:
        transaction.on_commit(lambda: current_app.send_task(MIRROR_TASK))


def langfuse_mirror_resume(*, actor: Actor, prompt_name: str, now: datetime) -> LangfuseMirror:
    """Mirror a prompt again after its mirror stopped (once Langfuse's numbering was put right):
    owners or an admin; audited. If the numbering still differs, it stops again, saying why."""
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        mirror = LangfuseMirror.objects.select_for_update().filter(prompt=prompt).first()
        if mirror is None or not mirror.stopped_reason:
            raise Conflict(
                f"The Langfuse mirror of '{prompt.name}' is not stopped.", code="mirror_not_stopped"
            )
        audit_record(
            actor=actor,
            action=AuditAction.LANGFUSE_MIRROR_RESUME,
            prompt_name=prompt.name,
            object_type="prompt",
            object_id=prompt.pk,
            data={"stopped_because": mirror.stopped_reason},
        )
        mirror.stopped_reason, mirror.attempts, mirror.last_error = "", 0, ""
        mirror.due_at, mirror.claimed_until = now, None
        mirror.changes += 1
        mirror.save()
        transaction.on_commit(lambda: current_app.send_task(MIRROR_TASK))
    return mirror


# --- Langfuse ----------------------------------------------------------------------------------


class _Langfuse:
    """The parts of Langfuse's public prompt API the mirror uses (those the langfuse SDK calls)."""

    def __init__(self) -> None:
        self.base_url = (settings.LANGFUSE_BASE_URL or DEFAULT_BASE_URL).rstrip("/")
        self.shown = outbound.safe_url(self.base_url)
        keys = f"{settings.LANGFUSE_PUBLIC_KEY}:{settings.LANGFUSE_SECRET_KEY}".encode()
        self.headers = {
            "Authorization": "Basic " + base64.b64encode(keys).decode(),
            "Content-Type": "application/json",
            "User-Agent": "promptramp-langfuse-mirror",
        }

    def call(self, what: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer; None for 404. Raises MirrorFailed without a usable answer."""
        data = None if body is None else json.dumps(body).encode()
        try:
            reply = outbound.request(
                method, self.base_url + path, data, self.headers, deadline_seconds=TIMEOUT_SECONDS
            )
        except outbound.OutboundError as failure:
            raise MirrorFailed(f"Langfuse ({what}): {failure}") from None
        if reply.status == 404 and method == "GET":
            return None
        if reply.status in (401, 403):
            raise MirrorFailed(
                f"Langfuse at {self.shown} refused the API keys (HTTP {reply.status}, {what}): "
                "check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY"
            )
        if not 200 <= reply.status < 300:
            raise MirrorFailed(f"Langfuse at {self.shown} answered HTTP {reply.status} ({what})")
        try:
            return json.loads(reply.body)
        except ValueError:
            raise MirrorFailed(
                f"Langfuse at {self.shown} answered with something not JSON ({what})"
            ) from None

    def prompt(self, name: str, label: str) -> dict[str, Any] | None:
        found = self.call(
            f"reading {label} of {name}",
            "GET",
            f"/api/public/v2/prompts/{quote(name, safe='')}?{urlencode({'label': label})}",
        )
        if found is not None and not (isinstance(found, dict) and _number(found.get("version"))):
            raise MirrorFailed(f"Langfuse at {self.shown} answered with an unexpected shape (reading {name})")
        return found

    def create(self, name: str, version: PromptVersion, kind: str) -> int:
        body: dict[str, Any] = {
            "name": name,
            "type": kind,
            "prompt": _content(version, kind),
            "config": {**version.config, **({"model": version.model} if version.model else {})},
            "labels": [],
            "commitMessage": version.message or f"promptramp v{version.version}",
        }
        created = self.call(f"creating v{version.version} of {name}", "POST", "/api/public/v2/prompts", body)
        number = _number(created.get("version")) if isinstance(created, dict) else None
        if number is None:
            raise MirrorFailed(
                f"Langfuse at {self.shown} answered with an unexpected shape (creating {name})"
            )
        return number

    def label(self, name: str, version: int, label: str) -> None:
        self.call(
            f"labelling v{version} of {name} {label}",
            "PATCH",
            f"/api/public/v2/prompts/{quote(name, safe='')}/versions/{version}",
            {"newLabels": [label]},
        )


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _content(version: PromptVersion, kind: str) -> Any:
    if kind == Prompt.Kind.TEXT:
        return version.template or ""
    return [{"role": m.get("role"), "content": m.get("content")} for m in version.messages or []]


def _same_content(theirs: dict[str, Any], version: PromptVersion, kind: str) -> bool:
    mine = _content(version, kind)
    if kind == Prompt.Kind.TEXT:
        return bool(theirs.get("prompt") == mine)
    messages = theirs.get("prompt")
    if not isinstance(messages, list):
        return False
    return bool(
        [{"role": m.get("role"), "content": m.get("content")} for m in messages if isinstance(m, dict)]
        == mine
    )


# --- mirroring ---------------------------------------------------------------------------------


def _sync(langfuse: _Langfuse, prompt: Prompt, until: float) -> bool:
    """Bring Langfuse up to date with ``prompt``: True when done, False when time ran out first."""
    versions = {v.version: v for v in PromptVersion.objects.filter(prompt=prompt).order_by("version")}
    ours = max(versions, default=0)
    latest = langfuse.prompt(prompt.name, "latest")
    theirs = int(latest["version"]) if latest else 0
    if theirs > ours:
        raise MirrorDiverged(
            f"Langfuse already has version {theirs} of '{prompt.name}' and promptramp's latest is "
            f"v{ours}: Langfuse would number promptramp's next version {theirs + 1}, not {ours + 1}"
        )
    if latest and not _same_content(latest, versions[theirs], prompt.kind):
        raise MirrorDiverged(
            f"Langfuse's version {theirs} of '{prompt.name}' is not promptramp's v{theirs} "
            "(its content differs): the numbering has diverged"
        )
    for number in range(theirs + 1, ours + 1):
        if time.monotonic() > until:
            return False
        given = langfuse.create(prompt.name, versions[number], prompt.kind)
        if given != number:
            raise MirrorDiverged(
                f"Langfuse numbered promptramp's v{number} of '{prompt.name}' as version {given}: "
                "the numbering has diverged"
            )
    production = (
        Label.objects.filter(prompt=prompt, name=PRODUCTION)
        .values_list("version__version", flat=True)
        .first()
    )
    if production is not None:
        current = langfuse.prompt(prompt.name, PRODUCTION)
        if current is None or current["version"] != production:
            langfuse.label(prompt.name, production, PRODUCTION)
    return True


def backoff_seconds(attempts: int) -> float:
    """Wait before the next try after ``attempts`` failed ones: 10 s, 20 s, 40 s … at most 1 h."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempts - 1))


def _claim_one(now: datetime) -> tuple[LangfuseMirror, int] | None:
    with transaction.atomic():
        mirror = (
            LangfuseMirror.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(due_at__lte=now, stopped_reason="")
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .select_related("prompt")
            .order_by("due_at")
            .first()
        )
        if mirror is None:
            return None
        LangfuseMirror.objects.filter(pk=mirror.pk).update(
            claimed_until=now + timedelta(seconds=CLAIM_SECONDS)
        )
    return mirror, mirror.changes


def _stop(mirror: LangfuseMirror, reason: str) -> None:
    with transaction.atomic():
        LangfuseMirror.objects.filter(pk=mirror.pk).update(
            stopped_reason=reason, due_at=None, claimed_until=None
        )
        audit_record(
            actor=Actor.system(),
            action=AuditAction.LANGFUSE_MIRROR_STOP,
            prompt_name=mirror.prompt.name,
            object_type="prompt",
            object_id=mirror.prompt.pk,
            reason=reason,
            data={"reason": reason},
        )
    logger.warning("Langfuse mirror stopped for %s: %s", mirror.prompt.name, reason)


def _attempt(mirror: LangfuseMirror, seen: int, now: datetime, until: float) -> MirrorAttempt:
    name = mirror.prompt.name
    rows = LangfuseMirror.objects.filter(pk=mirror.pk)
    try:
        done = _sync(_Langfuse(), mirror.prompt, until)
    except MirrorDiverged as diverged:
        _stop(mirror, str(diverged))
        return MirrorAttempt(name, "stopped", str(diverged))
    except MirrorFailed as failed:
        attempts = mirror.attempts + 1
        rows.update(
            attempts=attempts,
            last_error=str(failed)[:1000],
            due_at=now + timedelta(seconds=backoff_seconds(attempts)),
            claimed_until=None,
        )
        logger.warning("Langfuse mirror of %s failed (attempt %d): %s", name, attempts, failed)
        return MirrorAttempt(name, "failed", str(failed))
    if not done:
        rows.update(claimed_until=None, due_at=now)
        return MirrorAttempt(name, "partial")
    with transaction.atomic():
        rows.filter(changes=seen).update(due_at=None)  # a change marked meanwhile stays due
        rows.update(claimed_until=None, attempts=0, last_error="", mirrored_at=now)
    return MirrorAttempt(name, "mirrored")


def mirror_deliver_due(*, now: datetime, limit: int = BATCH) -> list[MirrorAttempt]:
    """Mirror the prompts due at ``now`` (up to ``limit``, claiming none after RUN_SECONDS)."""
    attempts: list[MirrorAttempt] = []
    started = time.monotonic()
    until = started + RUN_SECONDS
    while len(attempts) < limit and time.monotonic() < until:
        claimed = _claim_one(now)
        if claimed is None:
            break
        attempt = _attempt(*claimed, now, until)
        record([ATTEMPTS.by(attempt.outcome)])  # committed: each attempt writes on its own
        attempts.append(attempt)
    return attempts
