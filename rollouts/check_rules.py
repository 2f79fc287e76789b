"""Required checks: the names a rollout may require, what a report may carry, and what a rollout
waiting in ``pending`` for its checks does next (`checks_outcome`).

Pure: no Django, no clock. The services that store reports and act on the outcome are in
rollouts.checks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rollouts.figures import duration_text

MAX_NAME = 64
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_CHECKS = 20
DEFAULT_CHECKS_TIMEOUT_S = 86400
MAX_CHECKS_TIMEOUT_S = 30 * 86400
MAX_DETAIL = 2000
MAX_URL = 2000
PENDING, PASS, FAIL = "pending", "pass", "fail"
REPORTED_STATUSES = (PASS, FAIL)


class ChecksError(ValueError):
    """An invalid ``required_checks`` or ``checks_timeout_s``; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"'{field}' {message}")
        self.field = field


def parse_required_checks(value: object) -> tuple[str, ...]:
    """The names of ``required_checks`` as sent (None: none), in their order."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_CHECKS:
        raise ChecksError("required_checks", f"must be a list of at most {MAX_CHECKS} check names.")
    bad = [name for name in value if not isinstance(name, str) or not NAME_PATTERN.match(name)]
    if bad:
        raise ChecksError(
            "required_checks",
            "must hold names of 1 to 64 characters: lowercase letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit; got {bad[0]!r}.",
        )
    if len(set(value)) != len(value):
        raise ChecksError("required_checks", "must not name a check twice.")
    return tuple(value)


def parse_checks_timeout(value: object) -> int:
    """``checks_timeout_s`` as sent (None: the default)."""
    if value is None:
        return DEFAULT_CHECKS_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHECKS_TIMEOUT_S:
        raise ChecksError(
            "checks_timeout_s", f"must be a whole number of seconds within 1..{MAX_CHECKS_TIMEOUT_S}."
        )
    return value


class Outcome(StrEnum):
    WAIT = "wait"
    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class CheckState:
    name: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class ChecksOutcome:
    outcome: Outcome
    reason: str


def failure_reason(name: str, detail: str) -> str:
    """Why a rollout was aborted by the failing check ``name``."""
    return f"required check '{name}' failed" + (f": {detail}" if detail else "")


def checks_outcome(
    *, checks: Sequence[CheckState], created_at: datetime, timeout_s: int, now: datetime
) -> ChecksOutcome:
    """What a rollout waiting for ``checks`` does at ``now``: abort on a failed check (the first
    reported), start (or allow a start) once every check passed, abort when ``timeout_s`` has
    passed since ``created_at`` without that, otherwise wait."""
    failed = [check for check in checks if check.status == FAIL]
    if failed:
        return ChecksOutcome(Outcome.FAILED, failure_reason(failed[0].name, failed[0].detail))
    waiting = [check.name for check in checks if check.status != PASS]
    if not waiting:
        return ChecksOutcome(
            Outcome.PASSED, "every required check passed: " + ", ".join(c.name for c in checks)
        )
    if now >= created_at + timedelta(seconds=timeout_s):
        return ChecksOutcome(
            Outcome.TIMED_OUT,
            f"required checks not all passed within {duration_text(timeout_s)}: still pending: "
            + ", ".join(waiting),
        )
    return ChecksOutcome(Outcome.WAIT, "waiting for required checks: " + ", ".join(waiting))
