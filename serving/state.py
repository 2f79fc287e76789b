"""What each prompt serves right now, held in memory by every web process.

The serving state is an immutable object built from PostgreSQL: every prompt's production version,
each running or paused rollout (baseline, candidate, percent, salt, and in a shadow step the
shadow percent: every caller gets the baseline, and the answers of the units below it also carry
the candidate as ``shadow``, to run unseen), and the prompt's overrides (``ServedOverrides``: the
version each one serves is decided here, an ``arm`` override's from the active rollout). It is
cached per process by ``core.state_cache`` and updated when any process calls
``state_changed(SERVING_STATE, [prompt names])`` (registry, rollout and override services do,
inside their transactions): only the named prompts are read again (``serving_state_update``).

Everything a resolve answers is serialized when the state is built: a request is a dictionary
lookup (and one by unit and per attribute for a prompt with overrides), at most one hash, and a
few byte joins. ``resolve`` and the body helpers below do no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection
from django.utils import timezone

from core.prompt_limits import prompt_allowed
from core.state_cache import SERVING_STATE, StateCache
from registry.errors import NoProductionVersion, PromptNotFound
from registry.models import PRODUCTION, Label, Prompt, PromptVersion
from rollouts.models import Rollout
from serving.bucketing import BUCKETS, assign, default_salt, threshold_of
from serving.models import Override
from serving.snapshot_changes import FORMAT_FIELD


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
    shadow_percent: int | None
    """In a shadow step, the percent of units whose baseline answers carry the candidate as
    ``shadow`` (``threshold`` is then 0: nobody is served the candidate)."""
    shadow_threshold: int
    shadow_piece: bytes  # b'"shadow":{…},' — the candidate as a shadow answer carries it (in a shadow step)


@dataclass(frozen=True, slots=True)
class ServedOverride:
    """One applying override: what it serves (``served``; ``rollout_id`` is the active
    rollout's, when there is one) until ``expires_at`` (Unix seconds; None: never)."""

    id: int
    expires_at: float | None
    served: ServedVersion
    rollout_id: int | None
    tail: bytes  # the body after ``head``: arm, rollout id, bucket, override id
    entry: dict[str, Any]  # as the snapshot publishes it


@dataclass(frozen=True, slots=True)
class ServedOverrides:
    """A prompt's overrides by what they match: a resolve is at most one lookup by unit and one
    per attribute it carries, whatever their number."""

    units: Mapping[str, ServedOverride]
    attributes: Mapping[tuple[str, str], ServedOverride]

    def match(
        self, unit: str | None, attributes: Mapping[str, str] | None, now: float
    ) -> ServedOverride | None:
        """The override that applies at ``now``: the unit's, else the newest of the attributes'."""
        if unit:
            hit = self.units.get(unit)
            if hit is not None and (hit.expires_at is None or hit.expires_at > now):
                return hit
        best = None
        if attributes and self.attributes:
            for pair in attributes.items():
                hit = self.attributes.get(pair)
                if (
                    hit is not None
                    and (hit.expires_at is None or hit.expires_at > now)
                    and (best is None or hit.id > best.id)
                ):
                    best = hit
        return best


@dataclass(frozen=True, slots=True)
class ServedPrompt:
    name: str
    production: ServedVersion | None
    rollout: ServedRollout | None
    overrides: ServedOverrides | None = None


@dataclass(frozen=True)
class LimitedSnapshot:
    """The snapshot as a key limited to prompts sees it: only the prompts it may read."""

    entries: Mapping[str, bytes]
    snapshot: bytes
    snapshot_etag: str


@dataclass(frozen=True)
class ServingState:
    prompts: Mapping[str, ServedPrompt]
    generated_at: datetime
    entries: Mapping[str, bytes]  # each prompt's entry of the snapshot's "prompts", serialized
    # What an update reuses: each entry with its key (b'"name":{…}') and its digest, and the
    # names in order.
    pieces: Mapping[str, bytes]
    digests: Mapping[str, bytes]
    order: tuple[str, ...]

    @functools.cached_property
    def snapshot(self) -> bytes:
        """The snapshot's body, prompts in name order; joined when first asked for (a change
        that nobody reads the snapshot of costs no join of every prompt)."""
        prompts_json = b"{%b}" % b",".join([self.pieces[name] for name in self.order])
        generated_at = orjson.dumps(self.generated_at.isoformat())
        return b"".join((FORMAT_FIELD, b'"generated_at":', generated_at, b',"prompts":', prompts_json, b"}"))

    @functools.cached_property
    def snapshot_etag(self) -> str:
        """Made of the entries' digests: every process, however it got there, serves the same
        snapshot under the same ETag."""
        digest = hashlib.sha256(b"".join([self.digests[name] for name in self.order])).hexdigest()
        return 'W/"' + digest[:32] + '"'

    @functools.cached_property
    def _limited(self) -> dict[tuple[str, ...], LimitedSnapshot]:
        return {}

    def limited(self, prompts: tuple[str, ...]) -> LimitedSnapshot:
        """The snapshot of the prompts a key limited to ``prompts`` may read, with its own ETag;
        built once per state and distinct ``prompts`` (the unlimited snapshot costs nothing more)."""
        view = self._limited.get(prompts)
        if view is None:
            names = [name for name in self.order if prompt_allowed(prompts, name)]
            generated_at = orjson.dumps(self.generated_at.isoformat())
            prompts_json = b"{%b}" % b",".join([self.pieces[name] for name in names])
            digest = hashlib.sha256(b"".join([self.digests[name] for name in names])).hexdigest()
            view = LimitedSnapshot(
                entries={name: self.entries[name] for name in names},
                snapshot=b"".join(
                    (FORMAT_FIELD, b'"generated_at":', generated_at, b',"prompts":', prompts_json, b"}")
                ),
                snapshot_etag='W/"' + digest[:32] + '"',
            )
            self._limited[prompts] = view
        return view


@dataclass(slots=True)  # not frozen: made for every resolve, and a frozen one takes five times as long
class Resolved:
    """The answer to one resolve: a version, the arm it came from, and why."""

    name: str
    served: ServedVersion
    arm: str
    rollout_id: int | None
    bucket: int | None
    sticky: bool
    tail: (
        bytes  # the body after ``head``: arm, rollout id, bucket (shadow, override id) up to the sticky flag
    )
    shadow: ServedVersion | None = None  # the candidate to run unseen, in a shadow step's sample
    override_id: int | None = None

    def body(self, *, stale: bool) -> bytes:
        end = b',"stale":true}' if stale else b"}"
        sticky = b'"sticky":true' if self.sticky else b'"sticky":false'
        return b"".join((self.served.head, self.tail, sticky, end))

    def etag(self, *, stale: bool) -> str:
        rollout = "" if self.rollout_id is None else f".{self.rollout_id}.{self.bucket}"
        if self.shadow is not None:
            rollout += f".{self.shadow.tag}"
        if self.override_id is not None:
            rollout = f".{self.override_id}{rollout}"
        flags = ("s" if self.sticky else "r") + ("~" if stale else "")
        return f'"{self.served.tag}.{self.arm[0]}{rollout}.{flags}"'

    def as_dict(self, *, stale: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, **self.served.body}
        body.update(arm=self.arm, rollout_id=self.rollout_id, bucket=self.bucket)
        if self.shadow is not None:
            body["shadow"] = shadow_body(self.shadow)
        if self.override_id is not None:
            body["override_id"] = self.override_id
        body["sticky"] = self.sticky
        if stale:
            body["stale"] = True
        return body


PRODUCTION_TAIL = b',"arm":"production","rollout_id":null,"bucket":null,'


def resolve(
    state: ServingState,
    name: str,
    unit: str | None,
    *,
    random_bucket: int,
    attributes: Mapping[str, str] | None = None,
    now: float = 0.0,
) -> Resolved:
    """Which version ``unit`` (with ``attributes``) gets of prompt ``name`` at ``now`` (Unix
    seconds): an override's that applies, else the running or paused rollout's arm, else
    production. ``random_bucket`` (0…9999) places a request without a unit."""
    prompt = state.prompts.get(name)
    if prompt is None:
        raise PromptNotFound(f"Prompt '{name}' does not exist.")
    if prompt.overrides is not None:
        hit = prompt.overrides.match(unit, attributes, now)
        if hit is not None:
            return Resolved(
                name, hit.served, "override", hit.rollout_id, None, bool(unit), hit.tail, override_id=hit.id
            )
    rollout = prompt.rollout
    if rollout is None:
        if prompt.production is None:
            raise NoProductionVersion(f"Prompt '{name}' has no production version.")
        return Resolved(name, prompt.production, "production", None, None, bool(unit), PRODUCTION_TAIL)
    assignment = assign(
        salt=rollout.salt, threshold=rollout.threshold, unit=unit, random_bucket=random_bucket
    )
    bucket = assignment.bucket
    if assignment.arm == "candidate":
        served, tail = rollout.candidate, rollout.candidate_tail
    else:
        served, tail = rollout.baseline, rollout.baseline_tail
    if bucket < rollout.shadow_threshold:  # a shadow step's sample: the candidate, unseen
        tail = b"".join((tail, str(bucket).encode(), b",", rollout.shadow_piece))
        return Resolved(
            name, served, assignment.arm, rollout.id, bucket, assignment.sticky, tail, rollout.candidate
        )
    return Resolved(
        name,
        served,
        assignment.arm,
        rollout.id,
        bucket,
        assignment.sticky,
        tail + str(bucket).encode() + b",",
    )


def random_bucket() -> int:
    return random.randrange(BUCKETS)


# --- building the state from PostgreSQL --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _VersionRow:
    """A version's served columns, as the serving query reads them."""

    version: int
    template: str | None
    messages: list[dict[str, Any]] | None
    model: str
    config: dict[str, Any]
    variables: list[str]
    content_hash: str

    @classmethod
    def of(cls, columns: tuple[Any, ...]) -> _VersionRow | None:
        if columns[0] is None:
            return None
        version, template, messages, model, config, variables, content_hash = columns
        return cls(version, template, _json(messages), model, _json(config), _json(variables), content_hash)


def _json(value: Any) -> Any:
    """A JSON column as Django's PostgreSQL backend hands it to a plain cursor: text."""
    return orjson.loads(value) if isinstance(value, str) else value


def _served_version(name: str, kind: str, version: _VersionRow) -> ServedVersion:
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


def shadow_body(version: ServedVersion) -> dict[str, Any]:
    """The candidate as an answer's ``shadow`` carries it: its version and content."""
    return {key: value for key, value in version.body.items() if key != "kind"}


def _served_rollout(
    name: str, kind: str, rollout: tuple[Any, ...], baseline: _VersionRow, candidate: _VersionRow
) -> ServedRollout:
    rollout_id, state, percent, salt, shadow_percent = rollout

    def tail(arm: str) -> bytes:
        return f',"arm":"{arm}","rollout_id":{rollout_id},"bucket":'.encode()

    served_candidate = _served_version(name, kind, candidate)
    shadow = None if shadow_percent is None else int(shadow_percent)
    return ServedRollout(
        id=rollout_id,
        state=state,
        percent=percent,
        salt=salt or default_salt(name, rollout_id),
        threshold=threshold_of(percent),
        baseline=_served_version(name, kind, baseline),
        candidate=served_candidate,
        baseline_tail=tail("baseline"),
        candidate_tail=tail("candidate"),
        shadow_percent=shadow,
        shadow_threshold=0 if shadow is None else threshold_of(shadow),
        shadow_piece=b""
        if shadow is None
        else b'"shadow":' + orjson.dumps(shadow_body(served_candidate)) + b",",
    )


def _snapshot_entry(prompt: ServedPrompt) -> dict[str, Any]:
    rollout = prompt.rollout
    entry: dict[str, Any] = {
        "production": prompt.production.body if prompt.production else None,
        "rollout": None
        if rollout is None
        else {
            "id": rollout.id,
            "state": rollout.state,
            "percent": float(rollout.percent),
            **({} if rollout.shadow_percent is None else {"shadow_percent": rollout.shadow_percent}),
            "salt": rollout.salt,
            "baseline": rollout.baseline.body,
            "candidate": rollout.candidate.body,
        },
    }
    if prompt.overrides is not None:
        # Each override with the version it serves, oldest first; each served version's body
        # once, under its number.
        served = [*prompt.overrides.units.values(), *prompt.overrides.attributes.values()]
        served.sort(key=lambda override: override.id)
        entry["overrides"] = [override.entry for override in served]
        entry["override_versions"] = {
            str(override.served.version): override.served.body for override in served
        }
    return entry


_VERSION_COLUMNS = (
    "{v}.version, {v}.template, {v}.messages, {v}.model, {v}.config, {v}.variables, {v}.content_hash"
)


def _serving_query(named: bool) -> str:
    """One query of plain rows: each prompt with its production version and its splitting
    rollout's two versions (the ORM's own work was most of an update's cost)."""
    columns = ", ".join(_VERSION_COLUMNS.format(v=v) for v in ("production", "baseline", "candidate"))
    return f"""
        SELECT prompt.name, prompt.kind, rollout.id, rollout.state, rollout.percent, rollout.salt,
               CASE WHEN rollout.plan -> rollout.step_index::int ->> 'shadow' = 'true'
                    THEN (rollout.plan -> rollout.step_index::int ->> 'percent')::int END,
               {columns}
        FROM {Prompt._meta.db_table} prompt
        LEFT JOIN {Label._meta.db_table} label ON label.prompt_id = prompt.id AND label.name = %(production)s
        LEFT JOIN {PromptVersion._meta.db_table} production ON production.id = label.version_id
        LEFT JOIN {Rollout._meta.db_table} rollout ON rollout.prompt_id = prompt.id
            AND rollout.state = ANY(%(splitting)s)
        LEFT JOIN {PromptVersion._meta.db_table} baseline ON baseline.id = rollout.baseline_id
        LEFT JOIN {PromptVersion._meta.db_table} candidate ON candidate.id = rollout.candidate_id
        {"WHERE prompt.name = ANY(%(names)s)" if named else ""}
        ORDER BY prompt.name
    """


def _overrides_query(named: bool) -> str:
    """The applying overrides, oldest first, each with the version it serves: its own, or the
    arm of the prompt's active rollout (pending too), or production when none is active."""
    return f"""
        SELECT prompt.name, prompt.kind, override.id, override.unit, override.attribute,
               override.value, override.arm, override.expires_at, active.id,
               {_VERSION_COLUMNS.format(v="target")}
        FROM {Override._meta.db_table} override
        JOIN {Prompt._meta.db_table} prompt ON prompt.id = override.prompt_id
        LEFT JOIN {Rollout._meta.db_table} active ON active.prompt_id = prompt.id
            AND active.state = ANY(%(active)s)
        LEFT JOIN {Label._meta.db_table} label ON label.prompt_id = prompt.id AND label.name = %(production)s
        JOIN {PromptVersion._meta.db_table} target ON target.id = CASE
            WHEN override.version_id IS NOT NULL THEN override.version_id
            WHEN active.id IS NULL THEN label.version_id
            WHEN override.arm = %(candidate)s THEN active.candidate_id
            ELSE active.baseline_id END
        WHERE (override.expires_at IS NULL OR override.expires_at > %(now)s)
        {"AND prompt.name = ANY(%(names)s)" if named else ""}
        ORDER BY override.id
    """


def _served_overrides(names: frozenset[str] | None) -> dict[str, ServedOverrides]:
    """Each prompt's applying overrides (for every prompt, or for those named)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _overrides_query(names is not None),
            {
                "active": list(Rollout.ACTIVE_STATES),
                "production": PRODUCTION,
                "candidate": Override.Arm.CANDIDATE,
                "now": timezone.now(),
                "names": list(names or ()),
            },
        )
        rows = cursor.fetchall()
    units: dict[str, dict[str, ServedOverride]] = {}
    attributes: dict[str, dict[tuple[str, str], ServedOverride]] = {}
    versions: dict[tuple[str, int], ServedVersion] = {}
    for name, kind, override_id, unit, attribute, value, arm, expires_at, rollout_id, *version in rows:
        row = _VersionRow.of(tuple(version))
        assert row is not None  # joined, not left-joined
        served = versions.get((name, row.version))
        if served is None:
            served = versions[name, row.version] = _served_version(name, kind, row)
        match = {"unit": unit} if unit else {"attribute": attribute, "value": value}
        override = ServedOverride(
            id=override_id,
            expires_at=expires_at.timestamp() if expires_at else None,
            served=served,
            rollout_id=rollout_id,
            tail=b"".join(
                (
                    b',"arm":"override","rollout_id":',
                    orjson.dumps(rollout_id),
                    b',"bucket":null,"override_id":',
                    str(override_id).encode(),
                    b",",
                )
            ),
            entry={
                "id": override_id,
                "match": match,
                "version": row.version,
                "arm": arm or None,
                "rollout_id": rollout_id,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
        if unit:
            units.setdefault(name, {})[unit] = override
        else:
            attributes.setdefault(name, {})[attribute, value] = override
    return {
        name: ServedOverrides(units=units.get(name, {}), attributes=attributes.get(name, {}))
        for name in units.keys() | attributes.keys()
    }


def _served_prompts(names: frozenset[str] | None = None) -> dict[str, ServedPrompt]:
    """Each prompt's production version and splitting rollout, for every prompt or for those
    named."""
    with connection.cursor() as cursor:
        cursor.execute(
            _serving_query(names is not None),
            {
                "production": PRODUCTION,
                "splitting": list(Rollout.SPLITTING_STATES),
                "names": list(names or ()),
            },
        )
        rows = cursor.fetchall()
    overrides = _served_overrides(names)
    served: dict[str, ServedPrompt] = {}
    width = len(_VERSION_COLUMNS.split(","))
    for row in rows:
        name, kind, rollout = row[0], row[1], row[2:7]
        production, baseline, candidate = (
            _VersionRow.of(row[start : start + width]) for start in range(7, 7 + 3 * width, width)
        )
        served[name] = ServedPrompt(
            name=name,
            production=_served_version(name, kind, production) if production else None,
            rollout=_served_rollout(name, kind, rollout, baseline, candidate)
            if rollout[0] is not None and baseline and candidate
            else None,
            overrides=overrides.get(name),
        )
    return served


def _set_entry(
    prompt: ServedPrompt, entries: dict[str, bytes], pieces: dict[str, bytes], digests: dict[str, bytes]
) -> None:
    entry = orjson.dumps(_snapshot_entry(prompt))
    piece = orjson.dumps(prompt.name) + b":" + entry
    entries[prompt.name], pieces[prompt.name] = entry, piece
    digests[prompt.name] = hashlib.blake2b(piece, digest_size=16).digest()


def serving_state_build() -> ServingState:
    """Every prompt's production version and splitting rollout, from PostgreSQL."""
    served = _served_prompts()
    entries: dict[str, bytes] = {}
    pieces: dict[str, bytes] = {}
    digests: dict[str, bytes] = {}
    for prompt in served.values():
        _set_entry(prompt, entries, pieces, digests)
    return ServingState(served, timezone.now(), entries, pieces, digests, tuple(sorted(served)))


def serving_state_update(state: ServingState, names: frozenset[str]) -> ServingState:
    """``state`` with the prompts ``names`` read again (a prompt no longer there is dropped):
    work proportional to what changed, and copies of the mappings of names."""
    fresh = _served_prompts(names)
    prompts, entries = dict(state.prompts), dict(state.entries)
    pieces, digests = dict(state.pieces), dict(state.digests)
    came = fresh.keys() - state.prompts.keys()
    went = {name for name in names if name not in fresh and name in state.prompts}
    for name in went:
        del prompts[name], entries[name], pieces[name], digests[name]
    for prompt in fresh.values():
        prompts[prompt.name] = prompt
        _set_entry(prompt, entries, pieces, digests)
    order = tuple(sorted(prompts)) if came or went else state.order
    return ServingState(prompts, timezone.now(), entries, pieces, digests, order)


serving_cache: StateCache[ServingState] = StateCache(SERVING_STATE, serving_state_build, serving_state_update)
