"""The server's snapshot, parsed once into immutable objects that resolve without I/O."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from random import randrange
from time import time
from typing import Any

from .bucketing import BUCKETS, bucket_of, threshold_of
from .errors import MissingVariables
from .result import Arm, Kind, ResolvedPrompt
from .templating import Message, render, texts_of, variables_of

SPLITTING_STATES = ("running", "paused")
# The snapshot formats this SDK understands (a snapshot without `format` is 1). A newer format
# may mean something this SDK would get wrong (format 2 brought shadow steps, published as
# percent 0): such a snapshot is refused, and the client keeps serving its last one.
KNOWN_FORMATS = (1, 2)


class UnsupportedFormat(ValueError):
    """The server sent a snapshot of a format this SDK does not know."""

    def __init__(self, snapshot_format: object) -> None:
        super().__init__(f"snapshot format {snapshot_format!r} is not one this SDK knows {KNOWN_FORMATS}")
        self.format = snapshot_format


def _checked_format(body: Mapping[str, Any]) -> None:
    snapshot_format = body.get("format", 1)
    if snapshot_format not in KNOWN_FORMATS or isinstance(snapshot_format, bool):
        raise UnsupportedFormat(snapshot_format)


@dataclass(frozen=True, slots=True)
class PromptVersion:
    """One version of a prompt; resolving it directly is what production traffic gets."""

    name: str
    version: int | None
    kind: Kind
    template: str | None
    messages: list[Message] | None
    model: str | None
    config: dict[str, Any]
    variables: list[str]

    @classmethod
    def from_body(cls, name: str, body: Mapping[str, Any]) -> "PromptVersion":
        """A version body of the snapshot: {version, kind, template|messages, model, config}."""
        kind: Kind = body["kind"]
        if kind == "text":
            template, messages = body["template"], None
            if not isinstance(template, str):
                raise TypeError(f"prompt {name!r}: template is not a string")
        elif kind == "chat":
            template, messages = None, body["messages"]
        else:
            raise ValueError(f"prompt {name!r}: unknown kind {body['kind']!r}")
        return cls(
            name=name,
            version=int(body["version"]),
            kind=kind,
            template=template,
            messages=messages,
            model=body.get("model"),
            config=dict(body.get("config") or {}),
            variables=variables_of(texts_of(template, messages)),
        )

    @classmethod
    def from_default(cls, name: str, content: str | list[Message]) -> "PromptVersion":
        """A caller-supplied default: a text template, or a list of chat messages."""
        kind: Kind
        if isinstance(content, str):
            template, messages, kind = content, None, "text"
        else:
            template, messages, kind = None, list(content), "chat"
        return cls(
            name=name,
            version=None,
            kind=kind,
            template=template,
            messages=messages,
            model=None,
            config={},
            variables=variables_of(texts_of(template, messages)),
        )

    def resolve(
        self,
        unit: str | None,
        variables: Mapping[str, object] | None,
        attributes: Mapping[str, str] | None = None,
    ) -> ResolvedPrompt:
        return self.resolved("production", None, None, bool(unit), variables)

    def resolved(
        self,
        arm: Arm,
        rollout_id: int | None,
        bucket: int | None,
        sticky: bool,
        variables: Mapping[str, object] | None,
    ) -> ResolvedPrompt:
        result = ResolvedPrompt(
            self.name,
            self.version,
            self.kind,
            self.template,
            self.messages,
            self.model,
            self.config,
            self.variables,
            arm,
            rollout_id,
            bucket,
            sticky,
        )
        if variables is not None:
            result.rendered, result.unused_variables = render(
                self.template, self.messages, self.variables, variables
            )
        return result


@dataclass(frozen=True, slots=True)
class Rollout:
    """A rollout that splits a prompt's traffic between its baseline and candidate versions.

    In a shadow step `threshold` is 0 (everyone gets the baseline) and the units below
    `shadow_threshold` also get the candidate as the result's `shadow`, to run unseen."""

    id: int
    salt: str
    threshold: int
    baseline: PromptVersion
    candidate: PromptVersion
    shadow_threshold: int = 0

    def resolve(
        self,
        unit: str | None,
        variables: Mapping[str, object] | None,
        attributes: Mapping[str, str] | None = None,
    ) -> ResolvedPrompt:
        if unit:
            bucket, sticky = bucket_of(self.salt, unit), True
        else:
            bucket, sticky = randrange(BUCKETS), False
        if bucket < self.threshold:
            return self.candidate.resolved("candidate", self.id, bucket, sticky, variables)
        result = self.baseline.resolved("baseline", self.id, bucket, sticky, variables)
        if bucket < self.shadow_threshold:
            result.shadow_sample = True
            try:
                result.shadow = self.candidate.resolved("shadow", self.id, bucket, sticky, variables)
            except MissingVariables as missing:  # as the server's render says it
                result.shadow_error = {
                    "code": "missing_variables",
                    "message": f"Missing variables: {', '.join(missing.names)}.",
                    "missing": missing.names,
                }
        return result


@dataclass(frozen=True, slots=True)
class Override:
    """One of a prompt's overrides: the version it serves (already decided by the server, also
    for an arm override) until `expires_at` (Unix seconds; None: never)."""

    id: int
    version: PromptVersion
    rollout_id: int | None
    expires_at: float | None

    def resolved(self, unit: str | None, variables: Mapping[str, object] | None) -> ResolvedPrompt:
        result = self.version.resolved("override", self.rollout_id, None, bool(unit), variables)
        result.override_id = self.id
        return result


@dataclass(frozen=True, slots=True)
class Overridden:
    """A prompt with overrides, applied as the server applies them: the unit's override first,
    else the newest override of an attribute value the caller gave, else `served` (None when the
    prompt serves nothing else). A lookup by unit and one per attribute, whatever their number."""

    served: PromptVersion | Rollout | None
    units: Mapping[str, Override]
    attributes: Mapping[tuple[str, str], Override]

    def resolve(
        self,
        unit: str | None,
        variables: Mapping[str, object] | None,
        attributes: Mapping[str, str] | None = None,
    ) -> ResolvedPrompt | None:
        now = time()
        if unit:
            hit = self.units.get(unit)
            if hit is not None and (hit.expires_at is None or hit.expires_at > now):
                return hit.resolved(unit, variables)
        if attributes and self.attributes:
            best = None
            for pair in attributes.items():
                hit = self.attributes.get(pair)
                if (
                    hit is not None
                    and (hit.expires_at is None or hit.expires_at > now)
                    and (best is None or hit.id > best.id)
                ):
                    best = hit
            if best is not None:
                return best.resolved(unit, variables)
        return None if self.served is None else self.served.resolve(unit, variables)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every prompt's serving state: its overrides, its running or paused rollout, else its
    production version."""

    prompts: Mapping[str, PromptVersion | Rollout | Overridden]
    etag: str | None
    generated_at: datetime | None

    @classmethod
    def parse(cls, body: Mapping[str, Any], etag: str | None) -> "Snapshot":
        """Parse the body of GET /api/v1/snapshot; a malformed one raises ValueError or similar,
        one of a format this SDK does not know `UnsupportedFormat`."""
        _checked_format(body)
        prompts = {name: served for name, item in body["prompts"].items() if (served := _served(name, item))}
        return cls(prompts=prompts, etag=etag, generated_at=_time(body.get("generated_at")))

    def changed(self, body: Mapping[str, Any], etag: str | None) -> "Snapshot":
        """This snapshot after a stream's `change` event: {generated_at, prompts: {name: entry}
        (the prompts that changed), removed: [name]}; a malformed one raises like `parse`."""
        _checked_format(body)
        prompts = dict(self.prompts)
        for name in body["removed"]:
            prompts.pop(name, None)
        for name, item in body["prompts"].items():
            served = _served(name, item)
            if served is None:
                prompts.pop(name, None)
            else:
                prompts[name] = served
        return Snapshot(prompts=prompts, etag=etag, generated_at=_time(body.get("generated_at")))


def _served(name: str, item: Mapping[str, Any]) -> PromptVersion | Rollout | Overridden | None:
    """What one snapshot entry serves: its overrides, then its splitting rollout, else its
    production version."""
    served = _rollout_or_production(name, item)
    overrides = item.get("overrides")
    if not overrides:
        return served
    versions = {
        int(number): PromptVersion.from_body(name, body) for number, body in item["override_versions"].items()
    }
    units: dict[str, Override] = {}
    attributes: dict[tuple[str, str], Override] = {}
    for entry in overrides:
        expires_at = entry.get("expires_at")
        override = Override(
            id=int(entry["id"]),
            version=versions[int(entry["version"])],
            rollout_id=entry.get("rollout_id"),
            expires_at=datetime.fromisoformat(expires_at).timestamp() if expires_at else None,
        )
        match = entry["match"]
        if "unit" in match:
            units[str(match["unit"])] = override
        else:
            attributes[str(match["attribute"]), str(match["value"])] = override
    return Overridden(served=served, units=units, attributes=attributes)


def _rollout_or_production(name: str, item: Mapping[str, Any]) -> PromptVersion | Rollout | None:
    rollout = item.get("rollout")
    if rollout and rollout["state"] in SPLITTING_STATES:
        return Rollout(
            id=int(rollout["id"]),
            salt=str(rollout["salt"]),
            threshold=threshold_of(float(rollout["percent"])),
            baseline=PromptVersion.from_body(name, rollout["baseline"]),
            candidate=PromptVersion.from_body(name, rollout["candidate"]),
            shadow_threshold=threshold_of(float(rollout.get("shadow_percent") or 0)),
        )
    if item.get("production") is not None:
        return PromptVersion.from_body(name, item["production"])
    return None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
