"""Checks of decoded JSON values (dicts, lists, strings, numbers, booleans, None) that never
recurse, so no nesting, however deep, exhausts Python's stack.

Pure: no Django.
"""

from __future__ import annotations


def nesting_depth(value: object) -> int:
    """How many lists and objects deep the value goes: 0 for a scalar, 1 for ``[]``, ``{}`` or
    ``{"a": 1}``, 2 for ``{"a": [1]}``."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest


def has_nul(value: object) -> bool:
    """Whether any string in the value, object keys included, holds a NUL character."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
