"""The rules of required checks (rollouts.check_rules): pure, so property-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollouts.check_rules import (
    DEFAULT_CHECKS_TIMEOUT_S,
    MAX_CHECKS,
    ChecksError,
    CheckState,
    Outcome,
    checks_outcome,
    parse_checks_timeout,
    parse_required_checks,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
check_lists = st.lists(
    st.tuples(names, st.sampled_from(["pending", "pass", "fail"]), st.text(max_size=30)),
    min_size=1,
    max_size=MAX_CHECKS,
    unique_by=lambda c: c[0],
).map(lambda items: [CheckState(*item) for item in items])


@given(check_lists, st.integers(1, 10**6), st.integers(0, 2 * 10**6))
def test_an_outcome_follows_the_checks_and_the_clock(checks, timeout_s, elapsed_s):
    outcome = checks_outcome(
        checks=checks, created_at=T0, timeout_s=timeout_s, now=T0 + timedelta(seconds=elapsed_s)
    )

    statuses = {c.status for c in checks}
    if "fail" in statuses:
        first = next(c for c in checks if c.status == "fail")
        assert outcome.outcome == Outcome.FAILED
        assert f"'{first.name}' failed" in outcome.reason and first.detail in outcome.reason
    elif statuses == {"pass"}:
        assert outcome.outcome == Outcome.PASSED
    elif elapsed_s >= timeout_s:
        assert outcome.outcome == Outcome.TIMED_OUT
        assert all(c.name in outcome.reason for c in checks if c.status == "pending")
    else:
        assert outcome.outcome == Outcome.WAIT


@given(check_lists, st.integers(1, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_waiting_longer_never_turns_an_outcome_back_into_a_wait(checks, timeout_s, first, later):
    def at(elapsed: int) -> Outcome:
        return checks_outcome(
            checks=checks, created_at=T0, timeout_s=timeout_s, now=T0 + timedelta(seconds=elapsed)
        ).outcome

    if at(first) != Outcome.WAIT:
        assert at(first + later) == at(first)


@given(st.lists(names, max_size=MAX_CHECKS, unique=True))
def test_valid_names_are_kept_in_order(given_names):
    assert parse_required_checks(given_names) == tuple(given_names)


@pytest.mark.parametrize(
    "value",
    [
        "offline-eval",
        ["Offline"],
        [""],
        ["a" * 65],
        ["has space"],
        ["-leading"],
        [1],
        ["dup", "dup"],
        [f"c{i}" for i in range(MAX_CHECKS + 1)],
    ],
)
def test_invalid_required_checks_are_refused_naming_the_field(value):
    with pytest.raises(ChecksError) as refused:
        parse_required_checks(value)
    assert refused.value.field == "required_checks"


@pytest.mark.parametrize("value", [0, -1, 30 * 86400 + 1, 1.5, True, "60"])
def test_invalid_timeouts_are_refused(value):
    with pytest.raises(ChecksError):
        parse_checks_timeout(value)


def test_the_timeout_defaults_to_a_day():
    assert parse_checks_timeout(None) == DEFAULT_CHECKS_TIMEOUT_S == 86400
