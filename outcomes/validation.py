"""Reading a batch of outcome events: JSON in, checked events or the problems of each item out.

Pure and fast (no Django, no I/O but reading the rules once; the arrival time is an argument):
it runs on every event of the ingest hot path, so each check is a type test or a cached regular
expression, never a serializer. Whether the prompt, version and rollout exist is checked
afterwards (outcomes.event_targets), with the same problem shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

# The per-event rules are the SDK's table (it checks events with them before sending).
RULES_FILE = Path(__file__).resolve().parent.parent / "sdk" / "promptramp" / "event_rules.json"
RULES: dict[str, Any] = orjson.loads(RULES_FILE.read_bytes())
MAX_EVENTS: int = RULES["max_events_per_batch"]
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_SCORES: int = RULES["max_scores_per_event"]
MAX_LATENCY_MS = float(RULES["max_latency_ms"])
MAX_COST_USD = float(RULES["max_cost_usd"])
MAX_SCORE_ABS = float(RULES["max_score_abs"])
MAX_TOKENS: int = RULES["max_tokens"]
TS_CLAMP_SECONDS = float(RULES["ts_clamp_seconds"])
LATE_SCORE_FIELDS = frozenset(RULES["late_score_fields"])
PRODUCTION = "production"
OVERRIDE = "override"  # served by an override: any version of the prompt, stored apart
SHADOW = "shadow"
# Baseline outcomes of the units in a shadow step's sample (events with ``"shadow_sample":
# true``, which the SDK sets when the answer carried ``shadow``): their own series, which the
# shadow runs are compared with.
SHADOW_BASELINE = "shadow_baseline"
ROLLOUT_ARMS: tuple[str, ...] = tuple(RULES["rollout_arms"])  # the arms an event with a rollout_id names
ARMS_WITHOUT_ROLLOUT: tuple[str, ...] = tuple(RULES["arms_without_rollout"])
_ARMS_WITH = ", ".join(f'"{arm}"' for arm in ROLLOUT_ARMS[:-1]) + f' or "{ROLLOUT_ARMS[-1]}"'
_ARMS_WITHOUT = ", ".join(f'"{arm}"' for arm in ARMS_WITHOUT_ROLLOUT)

PROMPT_NAME = re.compile(RULES["prompt_name"])
SCORE_NAME = re.compile(RULES["score_name"])
ERROR_TYPE = re.compile(RULES["error_type"])

# Names seen valid before: most batches repeat a handful, so the regex runs once per name.
_KNOWN_NAMES_LIMIT = 4096
_valid_score_names: set[str] = set()
_valid_error_types: set[str] = set()
_valid_prompt_names: set[str] = set()


class BatchRejected(ValueError):
    """The body as a whole cannot be read as a batch (not JSON, no ``events`` list, too many)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


@dataclass(slots=True)
class Event:
    """One outcome event as checked: ``event_id`` is the UUID's 16 bytes, ``minute`` the Unix
    minute it is counted in (its ``ts`` clamped to arrival ± 5 minutes)."""

    index: int
    event_id: bytes
    prompt: str
    version: int
    rollout_id: int | None
    arm: str | None
    latency_ms: float | int | None
    error: bool
    error_type: str | None
    cost_usd: float | int | None
    input_tokens: int | None
    output_tokens: int | None
    scores: dict[str, float | int]
    minute: int


@dataclass(slots=True)
class LateScore:
    """A late score as checked: scores for the call whose ``event_id`` is ``of_event`` (both
    UUIDs' 16 bytes), counted in that call's arm and minute."""

    index: int
    event_id: bytes
    of_event: bytes
    scores: dict[str, float | int]


def problem(index: int, field: str, reason: str) -> dict[str, Any]:
    return {"index": index, "field": field, "reason": reason}


def parse_batch(body: bytes, *, now: float) -> tuple[list[Event], list[LateScore], list[dict[str, Any]]]:
    """The calls' events and the late scores of a ``{"events": [...]}`` body, and the problems
    found in its items.

    ``now`` is the arrival time (Unix seconds). Raises BatchRejected when the body is not such
    an object or holds more than MAX_EVENTS items.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BatchRejected(f"The body is not valid JSON: {error}.") from None
    events = data.get("events") if type(data) is dict else None
    if type(events) is not list:
        raise BatchRejected('The body must be a JSON object {"events": [...]}.')
    if len(events) > MAX_EVENTS:
        raise BatchRejected(
            f"A batch holds at most {MAX_EVENTS} events; this one has {len(events)}.", too_large=True
        )
    parsed: list[Event] = []
    late: list[LateScore] = []
    problems: list[dict[str, Any]] = []
    times: dict[str, float | None] = {}
    lowest, highest = now - TS_CLAMP_SECONDS, now + TS_CLAMP_SECONDS
    for index, item in enumerate(events):
        if type(item) is dict and item.get("of_event") is not None:
            score = _late_score(index, item, problems)
            if score is not None:
                late.append(score)
            continue
        event = _event(index, item, problems, times, now, lowest, highest)
        if event is not None:
            parsed.append(event)
    return parsed, late, problems


def _event(
    index: int,
    item: object,
    problems: list[dict[str, Any]],
    times: dict[str, float | None],
    now: float,
    lowest: float,
    highest: float,
) -> Event | None:
    """One item as an Event, or None after adding its problems. Written for speed: every check
    is inline and a problem is only built when a check fails."""
    if type(item) is not dict:
        problems.append(problem(index, "", "must be a JSON object"))
        return None
    before = len(problems)
    get = item.get

    event_id = _uuid(index, "event_id", get("event_id"), problems)

    prompt: Any = get("prompt")
    if type(prompt) is not str or (
        prompt not in _valid_prompt_names and not _remember(prompt, _valid_prompt_names, PROMPT_NAME)
    ):
        problems.append(problem(index, "prompt", "required: a prompt name"))

    version: Any = get("version")
    if type(version) is not int or version < 1:
        problems.append(problem(index, "version", "required: a version number (integer >= 1)"))

    rollout_id = get("rollout_id")
    arm = get("arm")
    if rollout_id is None:
        if arm is not None and arm not in ARMS_WITHOUT_ROLLOUT:
            problems.append(
                problem(index, "arm", f"without a rollout_id, arm must be {_ARMS_WITHOUT} or null")
            )
    elif type(rollout_id) is not int or rollout_id < 1:
        problems.append(problem(index, "rollout_id", "must be a rollout id (integer >= 1) or null"))
    elif arm not in ROLLOUT_ARMS:
        problems.append(problem(index, "arm", f"with a rollout_id, arm must be {_ARMS_WITH}"))
    shadow_sample = get("shadow_sample")
    if shadow_sample is not None and shadow_sample is not False:
        if shadow_sample is not True:
            problems.append(problem(index, "shadow_sample", "must be true or false"))
        elif arm != "baseline" or rollout_id is None:
            problems.append(problem(index, "shadow_sample", 'only for arm "baseline" with a rollout_id'))
        else:
            arm = SHADOW_BASELINE

    latency = get("latency_ms")
    if latency is not None:
        kind = type(latency)
        if (kind is not float and kind is not int) or not 0 <= latency <= MAX_LATENCY_MS:
            problems.append(problem(index, "latency_ms", f"must be a number from 0 to {MAX_LATENCY_MS:.0f}"))

    error = get("error")
    if error is None:
        error = False
    elif type(error) is not bool:
        problems.append(problem(index, "error", "must be true or false"))

    error_type = get("error_type")
    if error_type is not None and (
        type(error_type) is not str
        or (
            error_type not in _valid_error_types and not _remember(error_type, _valid_error_types, ERROR_TYPE)
        )
    ):
        problems.append(problem(index, "error_type", "must be 1 to 64 characters of A-Z a-z 0-9 _ . : -"))

    cost = get("cost_usd")
    if cost is not None:
        kind = type(cost)
        if (kind is not float and kind is not int) or not 0 <= cost <= MAX_COST_USD:
            problems.append(problem(index, "cost_usd", f"must be a number from 0 to {MAX_COST_USD:.0f}"))

    input_tokens = get("input_tokens")
    if input_tokens is not None and (type(input_tokens) is not int or not 0 <= input_tokens <= MAX_TOKENS):
        problems.append(problem(index, "input_tokens", f"must be an integer from 0 to {MAX_TOKENS}"))
    output_tokens = get("output_tokens")
    if output_tokens is not None and (type(output_tokens) is not int or not 0 <= output_tokens <= MAX_TOKENS):
        problems.append(problem(index, "output_tokens", f"must be an integer from 0 to {MAX_TOKENS}"))

    scores = get("scores")
    if scores is None:
        scores = {}
    else:
        _check_scores(index, scores, problems)

    ts = get("ts")
    if ts is None:
        minute = int(now // 60)
    else:
        seconds = times.get(ts, math.nan) if type(ts) is str else None
        if seconds is not None and seconds != seconds:  # not parsed yet in this batch
            seconds = times[ts] = _timestamp(ts)
        if seconds is None:
            problems.append(problem(index, "ts", "must be an ISO-8601 time such as 2026-11-22T18:00:00Z"))
            minute = 0
        else:
            minute = int((lowest if seconds < lowest else highest if seconds > highest else seconds) // 60)

    if len(problems) != before:
        return None
    assert isinstance(prompt, str) and isinstance(version, int)  # checked above
    return Event(
        index,
        event_id,
        prompt,
        version,
        rollout_id,
        arm,
        latency,
        error,
        error_type,
        cost,
        input_tokens,
        output_tokens,
        scores,
        minute,
    )


def _late_score(index: int, item: dict[str, Any], problems: list[dict[str, Any]]) -> LateScore | None:
    """A late score (an item with ``of_event``), or None after adding its problems."""
    before = len(problems)
    event_id = _uuid(index, "event_id", item.get("event_id"), problems)
    of_event = _uuid(index, "of_event", item["of_event"], problems)
    for field, value in item.items():
        if field not in LATE_SCORE_FIELDS and value is not None:
            problems.append(
                problem(index, field, "a late score (of_event) carries only event_id, of_event and scores")
            )
    scores: Any = item.get("scores")
    if not scores:
        problems.append(problem(index, "scores", "required in a late score: at least one name: number"))
    else:
        _check_scores(index, scores, problems)
    if len(problems) != before:
        return None
    return LateScore(index, event_id, of_event, scores)


def _uuid(index: int, field: str, raw: object, problems: list[dict[str, Any]]) -> bytes:
    """A UUID's 16 bytes, or b"" after adding the problem."""
    if type(raw) is str and len(raw) == 36 and raw[8] == raw[13] == raw[18] == raw[23] == "-":
        try:
            value = bytes.fromhex(raw.replace("-", ""))
        except ValueError:
            pass
        else:
            if len(value) == 16:
                return value
    problems.append(problem(index, field, "required: a UUID (8-4-4-4-12 hexadecimal digits)"))
    return b""


def _check_scores(index: int, scores: object, problems: list[dict[str, Any]]) -> None:
    if type(scores) is not dict or len(scores) > MAX_SCORES:
        problems.append(problem(index, "scores", f"must be an object of at most {MAX_SCORES} name: number"))
        return
    for name, value in scores.items():
        if name not in _valid_score_names and not _remember(name, _valid_score_names, SCORE_NAME):
            problems.append(
                problem(index, "scores", f"{name[:80]!r} is not a score name ({SCORE_NAME.pattern})")
            )
            continue
        kind = type(value)
        if (kind is not float and kind is not int) or not -MAX_SCORE_ABS <= value <= MAX_SCORE_ABS:
            problems.append(problem(index, f"scores.{name}", "must be a finite number"))


def _remember(value: str, known: set[str], pattern: re.Pattern[str]) -> bool:
    """Whether ``value`` matches ``pattern``; a match is remembered in ``known``."""
    if pattern.fullmatch(value) is None:
        return False
    if len(known) >= _KNOWN_NAMES_LIMIT:
        known.clear()
    known.add(value)
    return True


def _timestamp(value: str) -> float | None:
    if len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        return None


# --- exposures -----------------------------------------------------------------------------

MAX_EXPOSURES: int = RULES["max_exposures_per_batch"]
EXPOSURE_ARMS = frozenset(RULES["exposure_arms"])
MAX_EXPOSURE_COUNT: int = RULES["max_exposure_count"]
MAX_ROLLOUT_ID: int = RULES["max_rollout_id"]


@dataclass(frozen=True, slots=True)
class ReportedExposure:
    """One row of a batch's ``exposures``, as checked: ``minute`` is clamped like an event's
    ``ts`` (to the arrival's minute ± 5 minutes)."""

    index: int
    rollout_id: int
    arm: str
    minute: int
    count: int


def exposure_problem(index: int, field: str, reason: str) -> dict[str, Any]:
    return {
        "exposure": index,
        "field": f"exposures[{index}].{field}" if field else f"exposures[{index}]",
        "reason": reason,
    }


def parse_exposures(
    body: bytes, *, now: float
) -> tuple[bytes | None, list[ReportedExposure], list[dict[str, Any]]]:
    """A batch's ``batch_id`` (the UUID's 16 bytes) and ``exposures``, and their problems
    (``{"exposure": i, "field": "exposures[i].…", "reason"}``; ``{"field": "batch_id", …}``).

    A body without either key costs a substring search; ``parse_batch`` has refused a body
    that is not a JSON object with an ``events`` list before this is called.
    """
    if b'"exposures"' not in body and b'"batch_id"' not in body:
        return None, [], []
    data = orjson.loads(body)
    problems: list[dict[str, Any]] = []
    raw_id = data.get("batch_id")
    batch_id = None
    if raw_id is not None:
        batch_id = _uuid_bytes(raw_id)
        if batch_id is None:
            problems.append({"field": "batch_id", "reason": "must be a UUID (8-4-4-4-12 hexadecimal digits)"})
    rows = data.get("exposures")
    if rows is None:
        return batch_id, [], problems
    if type(rows) is not list or len(rows) > MAX_EXPOSURES:
        problems.append({"field": "exposures", "reason": f"must be a list of at most {MAX_EXPOSURES} rows"})
        return batch_id, [], problems
    if rows and raw_id is None:
        problems.append({"field": "batch_id", "reason": "required with exposures: a UUID"})
    lowest = int((now - TS_CLAMP_SECONDS) // 60)
    highest = int((now + TS_CLAMP_SECONDS) // 60)
    exposures = []
    for index, row in enumerate(rows):
        before = len(problems)
        if type(row) is not dict:
            problems.append(exposure_problem(index, "", "must be a JSON object"))
            continue
        rollout_id: Any = row.get("rollout_id")
        arm: Any = row.get("arm")
        minute: Any = row.get("minute")
        count: Any = row.get("count")
        if type(rollout_id) is not int or not 1 <= rollout_id <= MAX_ROLLOUT_ID:
            problems.append(exposure_problem(index, "rollout_id", "required: a rollout id (integer >= 1)"))
        if type(arm) is not str or arm not in EXPOSURE_ARMS:
            arms = ", ".join(sorted(EXPOSURE_ARMS))
            problems.append(exposure_problem(index, "arm", f"required: one of {arms}"))
        if type(minute) is not int:
            problems.append(exposure_problem(index, "minute", "required: a Unix minute (seconds // 60)"))
        if type(count) is not int or not 1 <= count <= MAX_EXPOSURE_COUNT:
            problems.append(
                exposure_problem(index, "count", f"required: an integer from 1 to {MAX_EXPOSURE_COUNT}")
            )
        if len(problems) == before:
            clamped = min(max(minute, lowest), highest)
            exposures.append(ReportedExposure(index, rollout_id, arm, clamped, count))
    return batch_id, exposures, problems


def _uuid_bytes(value: object) -> bytes | None:
    if (
        type(value) is not str
        or len(value) != 36
        or not value[8] == value[13] == value[18] == value[23] == "-"
    ):
        return None
    try:
        raw = bytes.fromhex(value.replace("-", ""))
    except ValueError:
        return None
    return raw if len(raw) == 16 else None
