"""Events other systems follow (webhooks, the Langfuse mirror), emitted by any layer with one call.

A service that changes something others may react to calls `event_emit` inside its transaction:
the followers named in ``settings.PROMPTRAMP_EVENT_FOLLOWERS`` (the webhooks' outbox, the Langfuse
mirror) each write what they need in that same transaction (the outbox pattern: the event exists
exactly when the change committed) and send it later, with retries, off the request. The layers
below the followers import none of them; the settings name them, as for
``PROMPTRAMP_PRODUCTION_HOLDERS``.

A new event is one line in `EVENTS` (its name and what it means) and one `event_emit` call where
it happens; webhooks may subscribe to it from then on. The rollout transitions
(``rollout.started`` …) are the rollouts' own (``rollouts.webhooks``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

# Every event a follower may receive besides the rollout transitions: name → what it means.
EVENTS: dict[str, str] = {
    "prompt.created": "a prompt was created",
    "version.created": "a version of a prompt was published",
    "label.moved": "a label of a prompt now points at another version",
    "override.changed": "an override of a prompt was added or ended",
}


@dataclass(frozen=True)
class Event:
    """What happened: ``name`` (one of EVENTS), one line for a chat channel (``text``), the prompt
    it is about, when, and the fields of its JSON beside those (``data``)."""

    name: str
    text: str
    prompt: str
    at: datetime
    data: Mapping[str, Any]

    def body(self) -> dict[str, Any]:
        """The event's JSON: ``event``, ``text``, ``prompt``, ``at`` and its data."""
        return {
            **self.data,  # first: it cannot replace the fields every event has
            "event": self.name,
            "text": self.text,
            "prompt": self.prompt,
            "at": self.at.isoformat().replace("+00:00", "Z"),  # as the API writes times
        }


@functools.cache
def event_followers() -> list[Callable[[Event], None]]:
    return [import_string(path) for path in settings.PROMPTRAMP_EVENT_FOLLOWERS]


def event_emit(*, name: str, text: str, prompt: str, data: Mapping[str, Any]) -> Event:
    """Tell every follower about ``name``, in the caller's transaction (call it inside one)."""
    if name not in EVENTS:
        raise ValueError(f"{name!r} is not an event of core.events.EVENTS")
    event = Event(name=name, text=text, prompt=prompt, at=timezone.now(), data=dict(data))
    for follow in event_followers():
        follow(event)
    return event
