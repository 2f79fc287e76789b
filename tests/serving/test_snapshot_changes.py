"""The difference between two snapshots and the events that carry it (pure)."""

import json

from hypothesis import given
from hypothesis import strategies as st

from serving.snapshot_changes import (
    KEEPALIVE,
    SnapshotChange,
    change_apply,
    change_data,
    snapshot_change,
    sse_event,
)

names = st.text(alphabet="abc.-", min_size=1, max_size=4)
entries = st.dictionaries(names, st.sampled_from([b"1", b"2", b'{"a":null}', b'"x"']), max_size=8)


@given(entries, entries)
def test_applying_the_change_of_two_snapshots_to_the_first_gives_the_second(old, new):
    assert change_apply(old, snapshot_change(old, new)) == new


@given(entries, entries)
def test_a_change_holds_only_prompts_that_differ_and_removes_only_prompts_that_went(old, new):
    change = snapshot_change(old, new)

    assert all(old.get(name) != entry for name, entry in change.changed.items())
    assert set(change.removed) == set(old) - set(new)
    assert bool(change) == (old != new)


@given(entries, entries)
def test_a_change_event_carries_the_changed_entries_as_json(old, new):
    change = snapshot_change(old, new)

    data = json.loads(change_data(change, generated_at="2026-12-06T04:00:00+00:00"))

    assert data["generated_at"] == "2026-12-06T04:00:00+00:00"
    assert data["prompts"] == {name: json.loads(entry) for name, entry in change.changed.items()}
    assert data["removed"] == sorted(set(old) - set(new))


def test_an_event_is_its_name_id_and_one_line_of_data():
    event = sse_event("change", 'W/"abc"', change_data(SnapshotChange({}, ("gone",)), generated_at="t"))

    data = b'{"format":2,"generated_at":"t","prompts":{},"removed":["gone"]}'
    assert event == b'event: change\nid: W/"abc"\ndata: ' + data + b"\n\n"
    assert KEEPALIVE == b": keepalive\n\n"
