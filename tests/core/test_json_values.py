"""nesting_depth and has_nul agree with their obvious recursive definitions, and stay iterative
where recursion would exhaust the stack."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.json_values import has_nul, nesting_depth

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=30,
)


def depth_by_recursion(value: object) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max((depth_by_recursion(child) for child in value), default=0)
    return 0


def nul_by_recursion(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(nul_by_recursion(key) or nul_by_recursion(child) for key, child in value.items())
    if isinstance(value, list):
        return any(nul_by_recursion(child) for child in value)
    return False


@given(json_values)
def test_nesting_depth_counts_the_deepest_chain_of_lists_and_objects(value):
    assert nesting_depth(value) == depth_by_recursion(value)


@given(json_values)
def test_has_nul_finds_a_nul_in_any_string_or_key(value):
    assert has_nul(value) == nul_by_recursion(value)


def test_values_deeper_than_the_recursion_limit_are_measured():
    value: object = "a\x00"
    for n in range(5000):
        value = [value] if n % 2 else {"k": value}

    assert nesting_depth(value) == 5000
    assert has_nul(value)
