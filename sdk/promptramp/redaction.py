"""Redaction of secrets and personal data before a trace leaves the process: ``redact`` is a
``mask`` for the Langfuse client (``Langfuse(mask=promptramp.redact)``; `langfuse_client` sets it
by default).

It walks nested structures (dicts, lists, tuples, sets, dataclasses, pydantic models; numbers and
other objects are left as they are) and replaces, in every string and dict key:

- passwords (and user names) in URLs: ``https://user:secret@host`` → ``https://[REDACTED]@host``;
- bearer and basic credentials: ``Bearer eyJ…`` → ``Bearer [REDACTED]``;
- API keys: promptramp ``pr_…``, OpenAI ``sk-…``, Langfuse ``pk-lf-…``/``sk-lf-…``, AWS access
  key ids (``AKIA…``/``ASIA…``), GitHub, Slack, Google, Stripe keys, JSON web tokens, and any
  long token mixing upper case, lower case and digits (an AWS secret key, most generated keys);
- the value after a name such as ``password=``, ``api_key:``, ``secret`` or ``token``, and the
  whole value of a dict key so named;
- e-mail addresses;
- card numbers (13 to 19 digits, spaces or dashes between them allowed) that pass the Luhn check.

What it cannot know to be secret (a password in plain prose) it leaves; the rules favour removing
too much over too little.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
MAX_DEPTH = 64  # deeper than this, a value is replaced whole (a cycle ends here too)

_SECRET_NAME = "(?:{})".format(
    "|".join(
        (
            r"api[_-]?key",
            r"apikey",
            r"secret(?:[_-]?key)?",
            r"client[_-]?secret",
            r"password",
            r"passwd",
            r"pwd",
            r"(?:access|refresh|auth)[_-]?token",
            r"token",
            r"private[_-]?key",
            r"access[_-]?key(?:[_-]?id)?",
        )
    )
)
_SECRET_KEY = re.compile(rf"^[\w.-]*{_SECRET_NAME}$|^authorization$|^cookie$|^set-cookie$", re.IGNORECASE)

_RULES: list[tuple[re.Pattern[str], str]] = [
    # user:password@ in any URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@"), rf"\1{REDACTED}@"),
    # Authorization schemes
    # (a credential has a digit, a symbol or a capital inside: "basic understanding" is prose)
    (
        re.compile(
            r"(?i)\b(bearer|basic)(\s+)(?=[A-Za-z0-9\-._~+/]*(?:[0-9\-._~+/=]|[A-Za-z0-9](?-i:[A-Z])))[A-Za-z0-9\-._~+/]{8,}=*"
        ),
        rf"\1\2{REDACTED}",
    ),
    # keys with a known shape
    (re.compile(r"\bpr_[A-Za-z0-9_-]{8,}"), "[REDACTED_KEY]"),
    (re.compile(r"\b(?:sk|pk)-lf-[A-Za-z0-9_-]{4,}"), "[REDACTED_KEY]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "[REDACTED_KEY]"),
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b"), "[REDACTED_KEY]"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "[REDACTED_KEY]"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "[REDACTED_KEY]"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), "[REDACTED_KEY]"),
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}"), "[REDACTED_KEY]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED_KEY]"),
    # name=value, "name": "value"
    (
        re.compile(rf"(?i)\b({_SECRET_NAME}[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}}\]]+"),
        rf"\1{REDACTED}",
    ),
    # generic: a long token with upper case, lower case and digits
    (
        re.compile(
            r"(?<![A-Za-z0-9+/_-])(?=[A-Za-z0-9+/_-]*[A-Z])(?=[A-Za-z0-9+/_-]*[a-z])(?=[A-Za-z0-9+/_-]*[0-9])[A-Za-z0-9+/_-]{32,}={0,2}"
        ),
        "[REDACTED_KEY]",
    ),
    # e-mail addresses
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[REDACTED_EMAIL]"),
]
_DIGIT_RUN = re.compile(r"(?<![\d])\d+(?:[ -]\d+)*")


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` (digits only) pass the Luhn check of card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _cards(match: re.Match[str]) -> str:
    """The run of digit groups with every card number in it replaced. A card number is one or
    more whole groups (every group but its last of at least 4 digits), 13 to 19 digits in all,
    passing the Luhn check: so a card right after another number is still found."""
    run = match.group()
    groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", run)]
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(groups):
        found = None
        digits = ""
        for last in range(first, len(groups)):
            digits += run[groups[last][0] : groups[last][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                found = last
            if groups[last][1] - groups[last][0] < 4:  # only a card's last group is shorter
                break
        if found is None:
            first += 1
            continue
        spans.append((groups[first][0], groups[found][1]))
        first = found + 1
    for start, end in reversed(spans):
        run = run[:start] + "[REDACTED_CARD]" + run[end:]
    return run


def redact_text(text: str) -> str:
    """``text`` with the secrets and personal data above replaced."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return _DIGIT_RUN.sub(_cards, text)


def _redact(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if depth >= MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {_redact_key(key): _redact_item(key, item, depth) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, depth + 1) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _redact(dataclasses.asdict(value), depth + 1)
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        return _redact(dump(), depth + 1)
    return value


def _redact_key(key: Any) -> Any:
    return redact_text(key) if isinstance(key, str) else key


def _redact_item(key: Any, item: Any, depth: int) -> Any:
    if isinstance(key, str) and _SECRET_KEY.match(key) and item not in (None, "", [], {}):
        return REDACTED
    return _redact(item, depth + 1)


def redact(*, data: Any, **kwargs: Any) -> Any:
    """The ``mask`` of a Langfuse client: ``data`` with every string redacted, structures kept."""
    return _redact(data, 0)
