"""Which override applies (pure): the server's ``ServedOverrides.match`` and the SDK's
``Overridden`` against the rule as written — the unit's applying override, else the newest
applying override of an attribute value the caller gave — on any overrides and any caller."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from promptramp.snapshot import Overridden, PromptVersion
from promptramp.snapshot import Override as SdkOverride
from serving.state import ServedOverride, ServedOverrides, ServedVersion

UNITS = st.sampled_from(["u1", "u2", "u3"])
PAIRS = st.tuples(st.sampled_from(["tenant", "plan"]), st.sampled_from(["a", "b", "c"]))
# Far from now: the SDK reads its own clock.
EXPIRIES = st.sampled_from([None, -1000.0, 1000.0])


def _version(number: int) -> ServedVersion:
    body = {
        "version": number,
        "kind": "text",
        "template": f"v{number}",
        "model": "m",
        "config": {},
        "variables": [],
    }
    return ServedVersion(number, "text", f"v{number}", None, [], body, b"", str(number))


@given(
    units=st.dictionaries(UNITS, EXPIRIES),
    attributes=st.dictionaries(PAIRS, EXPIRIES),
    order=st.randoms(use_true_random=False),
    unit=st.one_of(st.none(), UNITS),
    given_attributes=st.dictionaries(
        st.sampled_from(["tenant", "plan", "region"]), st.sampled_from(["a", "b", "c"])
    ),
)
def test_the_unit_first_then_the_newest_attribute_match_that_has_not_expired(
    units, attributes, order, unit, given_attributes
):
    now = time.time()
    keys = [("unit", u) for u in units] + [("attribute", pair) for pair in attributes]
    order.shuffle(keys)  # ids in the order they were added
    rows = []
    for override_id, (kind, match) in enumerate(keys, start=1):
        offset = units[match] if kind == "unit" else attributes[match]
        rows.append((override_id, kind, match, None if offset is None else now + offset))

    def applies(expires_at):
        return expires_at is None or expires_at > now

    by_unit = [r for r in rows if r[1] == "unit" and r[2] == unit and applies(r[3])]
    by_attribute = [
        r for r in rows if r[1] == "attribute" and given_attributes.get(r[2][0]) == r[2][1] and applies(r[3])
    ]
    expected = by_unit[0][0] if by_unit else max((r[0] for r in by_attribute), default=None)

    served = {r[0]: ServedOverride(r[0], r[3], _version(r[0]), None, b"", {}) for r in rows}
    server = ServedOverrides(
        units={r[2]: served[r[0]] for r in rows if r[1] == "unit"},
        attributes={r[2]: served[r[0]] for r in rows if r[1] == "attribute"},
    )
    hit = server.match(unit, given_attributes, now)
    assert (hit.id if hit else None) == expected

    local = {
        r[0]: SdkOverride(r[0], PromptVersion.from_body("p", _version(r[0]).body), None, r[3]) for r in rows
    }
    production = PromptVersion.from_body("p", _version(0).body)
    sdk = Overridden(
        served=production,
        units={r[2]: local[r[0]] for r in rows if r[1] == "unit"},
        attributes={r[2]: local[r[0]] for r in rows if r[1] == "attribute"},
    )
    answer = sdk.resolve(unit, None, given_attributes)
    assert answer is not None
    assert answer.override_id == expected
    assert answer.version == (expected if expected is not None else 0)
    assert answer.arm == ("override" if expected is not None else "production")
