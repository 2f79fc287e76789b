"""Keys limited to prompts: a key's ``prompts`` is None (every prompt) or a tuple of names and
prefixes ending in ``*`` (``support.*``). Which prompts a key may touch, checked on every path
(the resolve fast path, the API's views, events, the snapshot and its stream)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db.models import Q

from core.errors import Forbidden, ValidationFailed

PromptLimits = tuple[str, ...] | None
MAX_PATTERNS = 200
PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}\*?$")


class PromptNotAllowed(Forbidden, code="prompt_not_allowed"): ...


def prompt_allowed(limits: PromptLimits, name: str) -> bool:
    """Whether a key limited to ``limits`` may touch the prompt ``name``."""
    if limits is None:
        return True
    for pattern in limits:
        if pattern[-1] == "*" and name.startswith(pattern[:-1]) or name == pattern:
            return True
    return False


def prompt_require(limits: PromptLimits, name: str) -> None:
    """PromptNotAllowed (403) unless the key may touch ``name``."""
    if not prompt_allowed(limits, name):
        raise PromptNotAllowed(
            f"This API key is limited to other prompts than {name!r}.", details={"prompt": name}
        )


def prompts_q(limits: PromptLimits, field: str) -> Q:
    """A filter on ``field`` (a prompt's name) keeping the prompts the key may touch."""
    if limits is None:
        return Q()
    allowed = Q(pk__in=[])
    exact = [pattern for pattern in limits if not pattern.endswith("*")]
    if exact:
        allowed |= Q(**{f"{field}__in": exact})
    for pattern in limits:
        if pattern.endswith("*"):
            allowed |= Q(**{f"{field}__startswith": pattern[:-1]})
    return allowed


def normalize_prompt_limits(prompts: object) -> PromptLimits:
    """None (every prompt) or a list of names and ``prefix*`` -> the sorted distinct patterns;
    anything else is a 400."""
    if prompts is None:
        return None
    message = f"'prompts' must be a list of 1 to {MAX_PATTERNS} prompt names or prefixes ending in '*'."
    if not isinstance(prompts, (list, tuple)) or not 0 < len(prompts) <= MAX_PATTERNS:
        raise ValidationFailed(message)
    bad = [p for p in prompts if not isinstance(p, str) or not PATTERN.match(p)]
    if bad:
        raise ValidationFailed(message, details={"prompts": [str(p)[:200] for p in bad]})
    return tuple(sorted(set(prompts)))


def patterns_match_only(limits: tuple[str, ...], names: Iterable[str]) -> dict[str, list[str]]:
    """Each pattern of ``limits`` with the names of ``names`` it matches (in ``names``'s order)."""
    listed = list(names)
    return {pattern: [name for name in listed if prompt_allowed((pattern,), name)] for pattern in limits}
