"""What each prompt serves right now, held in memory by every web process.

The serving state is an immutable object built from PostgreSQL: every prompt's production version
and each running or paused rollout (baseline, candidate, percent, salt). It is cached per process
by ``config.state_cache`` and rebuilt when any process calls ``state_changed(SERVING_STATE)``
(registry and rollout services do, inside their transactions).

Everything a resolve answers is serialized when the state is built: a request is a dictionary
lookup, at most one hash, and a few byte joins. ``resolve`` and the body helpers below do no I/O.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.utils import timezone

from config.state_cache import StateCache
from registry.bucketing import BUCKETS, assign, default_salt, threshold_of
from registry.errors import NoProductionVersion, PromptNotFound
from registry.models import PRODUCTION, Label, Prompt, PromptVersion
from registry.services import SERVING_STATE
from rollouts.models import Rollout

__all__ = ["SERVING_STATE", "serving_cache", "serving_state_build", "resolve"]


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """One version as served. ``head`` is its resolve body up to and including ``variables``,
    without the closing brace; ``tag`` identifies its content in ETags."""

    version: int
    kind: str
    template: str | None
    messages: list[dict[str, Any]] | None
    variables: list[str]
    body: dict[str, Any]
    head: bytes
    tag: str


@dataclass(frozen=True, slots=True)
class ServedRollout:
    id: int
    state: str
    percent: Decimal
    salt: str
    threshold: int
    baseline: ServedVersion
    candidate: ServedVersion
    baseline_tail: bytes
    candidate_tail: bytes


@dataclass(frozen=True, slots=True)
class ServedPrompt:
    name: str
    production: ServedVersion | None
    rollout: ServedRollout | None


@dataclass(frozen=True, slots=True)
class ServingState:
    prompts: Mapping[str, ServedPrompt]
    generated_at: datetime
    snapshot: bytes
    snapshot_etag: str
    # Each prompt's entry of the snapshot's "prompts", serialized: what the stream compares.
    entries: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Resolved:
    """The answer to one resolve: a version, the arm it came from, and why."""

    name: str
    served: ServedVersion
    arm: str
    rollout_id: int | None
    bucket: int | None
    sticky: bool
    tail: bytes  # the body after ``head``: arm, rollout id, bucket up to the sticky flag

    def body(self, *, stale: bool) -> bytes:
        end = b',"stale":true}' if stale else b"}"
        sticky = b'"sticky":true' if self.sticky else b'"sticky":false'
        return b"".join((self.served.head, self.tail, sticky, end))

    def etag(self, *, stale: bool) -> str:
        rollout = "" if self.rollout_id is None else f".{self.rollout_id}.{self.bucket}"
        flags = ("s" if self.sticky else "r") + ("~" if stale else "")
        return f'"{self.served.tag}.{self.arm[0]}{rollout}.{flags}"'

    def as_dict(self, *, stale: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, **self.served.body}
        body.update(arm=self.arm, rollout_id=self.rollout_id, bucket=self.bucket, sticky=self.sticky)
        if stale:
            body["stale"] = True
        return body


PRODUCTION_TAIL = b',"arm":"production","rollout_id":null,"bucket":null,'


def resolve(state: ServingState, name: str, unit: str | None, *, random_bucket: int) -> Resolved:
    """Which version ``unit`` gets of prompt ``name``: the running or paused rollout's arm, else
    production. ``random_bucket`` (0…9999) places a request without a unit."""
    prompt = state.prompts.get(name)
    if prompt is None:
        raise PromptNotFound(f"Prompt '{name}' does not exist.")
    rollout = prompt.rollout
    if rollout is None:
        if prompt.production is None:
            raise NoProductionVersion(f"Prompt '{name}' has no production version.")
        return Resolved(name, prompt.production, "production", None, None, bool(unit), PRODUCTION_TAIL)
    assignment = assign(
        salt=rollout.salt, threshold=rollout.threshold, unit=unit, random_bucket=random_bucket
    )
    if assignment.arm == "candidate":
        served, tail = rollout.candidate, rollout.candidate_tail
    else:
        served, tail = rollout.baseline, rollout.baseline_tail
    return Resolved(
        name,
        served,
        assignment.arm,
        rollout.id,
        assignment.bucket,
        assignment.sticky,
        tail + str(assignment.bucket).encode() + b",",
    )


def random_bucket() -> int:
    return random.randrange(BUCKETS)


# --- building the state from PostgreSQL --------------------------------------------------------


def _served_version(name: str, kind: str, version: PromptVersion) -> ServedVersion:
    body: dict[str, Any] = {"version": version.version, "kind": kind}
    if kind == Prompt.Kind.CHAT:
        body["messages"] = version.messages
    else:
        body["template"] = version.template
    body.update(model=version.model, config=version.config, variables=version.variables)
    head = orjson.dumps({"name": name, **body})[:-1]
    return ServedVersion(
        version=version.version,
        kind=kind,
        template=version.template if kind != Prompt.Kind.CHAT else None,
        messages=version.messages if kind == Prompt.Kind.CHAT else None,
        variables=list(version.variables),
        body=body,
        head=head,
        tag=f"{version.version}-{version.content_hash[:12]}",
    )


def _served_rollout(name: str, kind: str, rollout: Rollout) -> ServedRollout:
    def tail(arm: str) -> bytes:
        return f',"arm":"{arm}","rollout_id":{rollout.pk},"bucket":'.encode()

    return ServedRollout(
        id=rollout.pk,
        state=rollout.state,
        percent=rollout.percent,
        salt=rollout.salt or default_salt(name, rollout.pk),
        threshold=threshold_of(rollout.percent),
        baseline=_served_version(name, kind, rollout.baseline),
        candidate=_served_version(name, kind, rollout.candidate),
        baseline_tail=tail("baseline"),
        candidate_tail=tail("candidate"),
    )


def _snapshot_entry(prompt: ServedPrompt) -> dict[str, Any]:
    rollout = prompt.rollout
    return {
        "production": prompt.production.body if prompt.production else None,
        "rollout": None
        if rollout is None
        else {
            "id": rollout.id,
            "state": rollout.state,
            "percent": float(rollout.percent),
            "salt": rollout.salt,
            "baseline": rollout.baseline.body,
            "candidate": rollout.candidate.body,
        },
    }


def serving_state_build() -> ServingState:
    """Read every prompt's production version and splitting rollout: three queries."""
    prompts = list(Prompt.objects.order_by("name").values_list("id", "name", "kind"))
    production = {
        label.prompt_id: label.version
        for label in Label.objects.filter(name=PRODUCTION).select_related("version")
    }
    rollouts = {
        rollout.prompt_id: rollout
        for rollout in Rollout.objects.filter(state__in=Rollout.SPLITTING_STATES).select_related(
            "baseline", "candidate"
        )
    }
    served: dict[str, ServedPrompt] = {}
    for prompt_id, name, kind in prompts:
        version = production.get(prompt_id)
        rollout = rollouts.get(prompt_id)
        served[name] = ServedPrompt(
            name=name,
            production=_served_version(name, kind, version) if version else None,
            rollout=_served_rollout(name, kind, rollout) if rollout else None,
        )
    entries = {name: orjson.dumps(_snapshot_entry(p)) for name, p in served.items()}
    prompts_json = b"{%b}" % b",".join(orjson.dumps(name) + b":" + entry for name, entry in entries.items())
    generated_at = timezone.now()
    snapshot = b"".join(
        (b'{"generated_at":', orjson.dumps(generated_at.isoformat()), b',"prompts":', prompts_json, b"}")
    )
    etag = 'W/"' + hashlib.sha256(prompts_json).hexdigest()[:32] + '"'
    return ServingState(
        prompts=served, generated_at=generated_at, snapshot=snapshot, snapshot_etag=etag, entries=entries
    )


serving_cache: StateCache[ServingState] = StateCache(SERVING_STATE, serving_state_build)
