"""Per-minute aggregates of outcome events, as increments of Redis hash fields and back.

Pure (no Django, no I/O). A batch of events becomes, for each aggregate key
(``"<minute>:<series>"``), the integer and float increments of its hash fields; the ingest script
adds them with HINCRBY / HINCRBYFLOAT, so any split of a stream into batches adds up to the same
hash. ``minute_totals`` reads such a hash back into the columns of an OutcomeMinute row.

Fields of an aggregate hash:

=============  ================================================================
``n`` ``e``    events (requests), errors
``lc ls lq``   latency: events carrying it, sum, sum of squares (ms)
``h:<i>``      latency histogram: events in bucket ``i`` (rollouts.stats)
``cc cs cq``   cost in USD: count, sum, sum of squares
``ic is``      input tokens: events carrying them, sum (``oc os``: output tokens)
``s:<name>:c`` score ``name``: count (``:s`` sum, ``:q`` sum of squares)
``t:<type>``   errors of type ``type``
=============  ================================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from outcomes.validation import Event
from rollouts.stats import latency_bucket_index

Increments = tuple[dict[str, int], dict[str, float]]


def series_key(*, prompt_id: int, version_id: int, rollout_id: int | None, arm: str) -> str:
    """What an event is counted under, apart from its minute."""
    return f"{prompt_id}:{version_id}:{rollout_id if rollout_id is not None else '-'}:{arm}"


def aggregate(events: Iterable[tuple[str, Event]]) -> dict[str, Increments]:
    """The increments of each aggregate key for ``(series key, event)`` pairs."""
    groups: dict[str, list[Event]] = {}
    for series, event in events:
        key = f"{event.minute}:{series}"
        group = groups.get(key)
        if group is None:
            groups[key] = [event]
        else:
            group.append(event)
    return {key: _increments(group) for key, group in groups.items()}


def _increments(group: list[Event]) -> Increments:
    ints: dict[str, int] = {"n": len(group)}
    floats: dict[str, float] = {}
    failed = [e.error_type for e in group if e.error]
    if failed:
        ints["e"] = len(failed)
        for error_type, count in Counter(t for t in failed if t is not None).items():
            ints["t:" + error_type] = count
    latencies = [e.latency_ms for e in group if e.latency_ms is not None]
    if latencies:
        ints["lc"] = len(latencies)
        floats["ls"] = float(sum(latencies))
        floats["lq"] = float(sum([x * x for x in latencies]))
        for index, count in Counter(map(latency_bucket_index, latencies)).items():
            ints[f"h:{index}"] = count
    costs = [e.cost_usd for e in group if e.cost_usd is not None]
    if costs:
        ints["cc"] = len(costs)
        floats["cs"] = float(sum(costs))
        floats["cq"] = float(sum([x * x for x in costs]))
    inputs = [e.input_tokens for e in group if e.input_tokens is not None]
    if inputs:
        ints["ic"], ints["is"] = len(inputs), sum(inputs)
    outputs = [e.output_tokens for e in group if e.output_tokens is not None]
    if outputs:
        ints["oc"], ints["os"] = len(outputs), sum(outputs)
    scores: dict[str, list[float | int]] = {}
    for event in group:
        for name, value in event.scores.items():
            values = scores.get(name)
            if values is None:
                scores[name] = [value]
            else:
                values.append(value)
    for name, values in scores.items():
        ints[f"s:{name}:c"] = len(values)
        floats[f"s:{name}:s"] = float(sum(values))
        floats[f"s:{name}:q"] = float(sum([x * x for x in values]))
    return ints, floats


def increments_merge(parts: Iterable[Mapping[str, Increments]]) -> dict[str, Increments]:
    """Add up increments, as Redis does when they are applied one after the other."""
    total: dict[str, Increments] = {}
    for part in parts:
        for key, (ints, floats) in part.items():
            into_ints, into_floats = total.setdefault(key, ({}, {}))
            for name, count in ints.items():
                into_ints[name] = into_ints.get(name, 0) + count
            for name, value in floats.items():
                into_floats[name] = into_floats.get(name, 0.0) + value
    return total


def increments_payload(
    increments: Mapping[str, Increments],
) -> dict[str, tuple[dict[str, int], dict[str, str]]]:
    """The JSON the ingest script reads: floats as exact decimal strings (``repr``), which
    HINCRBYFLOAT takes as they are (a Lua number would keep only 14 digits)."""
    return {
        key: (ints, {name: repr(value) for name, value in floats.items()})
        for key, (ints, floats) in increments.items()
    }


@dataclass(frozen=True)
class MinuteKey:
    """Where an aggregate key belongs: its Unix minute and series."""

    minute: int
    prompt_id: int
    version_id: int
    rollout_id: int | None
    arm: str


def parse_key(key: str) -> MinuteKey:
    minute, prompt_id, version_id, rollout_id, arm = key.split(":")
    return MinuteKey(
        minute=int(minute),
        prompt_id=int(prompt_id),
        version_id=int(version_id),
        rollout_id=None if rollout_id == "-" else int(rollout_id),
        arm=arm,
    )


@dataclass
class MinuteTotals:
    """The columns of an OutcomeMinute row, read from one aggregate hash."""

    samples: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_sumsq: float = 0.0
    latency_histogram: dict[str, int] = field(default_factory=dict)
    cost_count: int = 0
    cost_sum: float = 0.0
    cost_sumsq: float = 0.0
    input_tokens_count: int = 0
    input_tokens_sum: int = 0
    output_tokens_count: int = 0
    output_tokens_sum: int = 0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)


_SCALARS = {
    "n": ("samples", int),
    "e": ("errors", int),
    "lc": ("latency_count", int),
    "ls": ("latency_sum", float),
    "lq": ("latency_sumsq", float),
    "cc": ("cost_count", int),
    "cs": ("cost_sum", float),
    "cq": ("cost_sumsq", float),
    "ic": ("input_tokens_count", int),
    "is": ("input_tokens_sum", int),
    "oc": ("output_tokens_count", int),
    "os": ("output_tokens_sum", int),
}
_SCORE_PARTS = {"c": "count", "s": "sum", "q": "sumsq"}


def minute_totals(fields: Mapping[bytes, bytes]) -> MinuteTotals:
    """Read an aggregate hash (as HGETALL gives it) into row columns. ValueError for a hash that
    is not one (an unknown field, a value that is not a number)."""
    totals = MinuteTotals()
    for raw_name, raw_value in fields.items():
        name = raw_name.decode()
        scalar = _SCALARS.get(name)
        if scalar is not None:
            column, kind = scalar
            setattr(totals, column, kind(raw_value))
        elif name.startswith("h:"):
            totals.latency_histogram[name[2:]] = int(raw_value)
        elif name.startswith("t:"):
            totals.error_types[name[2:]] = int(raw_value)
        elif name.startswith("s:"):
            score_name, part = name[2:].rsplit(":", 1)
            if part not in _SCORE_PARTS:
                raise ValueError(f"unknown aggregate field {name!r}")
            value = int(raw_value) if part == "c" else float(raw_value)
            totals.scores.setdefault(score_name, {})[_SCORE_PARTS[part]] = value
        else:
            raise ValueError(f"unknown aggregate field {name!r}")
    return totals
