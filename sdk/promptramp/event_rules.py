"""The per-event rules the server applies to outcome events, from the table both share
(``event_rules.json``, read by the server's validation too): an event the SDK accepts is one
the server accepts, so one careless value never costs a whole batch."""

import json
import math
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

RULES: dict[str, Any] = json.loads(resources.files(__package__).joinpath("event_rules.json").read_text())
PROMPT_NAME = re.compile(RULES["prompt_name"])
SCORE_NAME = re.compile(RULES["score_name"])
ERROR_TYPE = re.compile(RULES["error_type"])
MAX_EXPOSURES: int = RULES["max_exposures_per_batch"]
UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def figures_problems(
    *,
    latency_ms: object,
    error_type: object,
    cost_usd: object,
    input_tokens: object,
    output_tokens: object,
    scores: Mapping[Any, Any],
) -> list[str]:
    """What the server would refuse in these figures of an event (empty: nothing)."""
    problems = []
    for field, value, highest in (
        ("latency_ms", latency_ms, RULES["max_latency_ms"]),
        ("cost_usd", cost_usd, RULES["max_cost_usd"]),
    ):
        if value is not None and not _number(value, 0, highest):
            problems.append(f"{field} must be a number from 0 to {highest}, not {value!r}")
    for field, count in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if count is not None and not (type(count) is int and 0 <= count <= RULES["max_tokens"]):
            problems.append(f"{field} must be an integer from 0 to {RULES['max_tokens']}, not {count!r}")
    if error_type is not None and not (isinstance(error_type, str) and ERROR_TYPE.fullmatch(error_type)):
        problems.append(f"error_type must match {ERROR_TYPE.pattern}, not {error_type!r}")
    if len(scores) > RULES["max_scores_per_event"]:
        problems.append(f"at most {RULES['max_scores_per_event']} scores per event, not {len(scores)}")
    limit = RULES["max_score_abs"]
    for name, value in scores.items():
        if not (isinstance(name, str) and SCORE_NAME.fullmatch(name)):
            problems.append(f"{name!r} is not a score name ({SCORE_NAME.pattern})")
        elif not _number(value, -limit, limit):
            problems.append(f"score {name!r} must be a finite number, not {value!r}")
    return problems


def late_score_problems(of_event: object, scores: Mapping[Any, Any]) -> list[str]:
    """What the server would refuse in a late score of the call ``of_event`` (empty: nothing).
    A late score carries only ``RULES["late_score_fields"]``, which the SDK builds itself."""
    problems = []
    if not (isinstance(of_event, str) and is_event_id(of_event)):
        problems.append(f"of_event must be a call's event_id (a UUID), not {of_event!r}")
    if not scores:
        problems.append("a late score carries at least one score")
    problems += figures_problems(
        latency_ms=None, error_type=None, cost_usd=None, input_tokens=None, output_tokens=None, scores=scores
    )
    return problems


def is_event_id(value: str) -> bool:
    """Whether ``value`` is an event id as the server reads one (8-4-4-4-12 hexadecimal digits)."""
    return UUID.fullmatch(value) is not None


def _number(value: object, lowest: float, highest: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and lowest <= value <= highest
    )
