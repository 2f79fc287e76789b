"""What the snapshot stream sends (pure): the difference between two snapshots, and the
Server-Sent Events that carry a snapshot, a change or a keepalive.

A snapshot is seen here as its entries: each prompt's name and its serialized entry of the
snapshot's ``prompts`` (``serving.state.ServingState.entries``). Entries are compared as
bytes, so a change holds exactly the prompts whose entry differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

# The snapshot's shape, carried as its top-level ``format`` and in every ``change`` event. An SDK
# that does not know a format keeps serving its last snapshot (and says so): format 2 publishes a
# shadow step as ``percent: 0`` with ``shadow_percent``, which no SDK may read as an exposure.
SNAPSHOT_FORMAT = 2
FORMAT_FIELD = b'{"format":' + str(SNAPSHOT_FORMAT).encode() + b","
KEEPALIVE = b": keepalive\n\n"
# A keepalive from a process whose state could not be confirmed lately (Redis or PostgreSQL is
# failing): it does not confirm the client's snapshot.
STALE_KEEPALIVE = b": stale\n\n"


@dataclass(frozen=True, slots=True)
class SnapshotChange:
    changed: Mapping[str, bytes]  # new or different entries, by prompt name
    removed: tuple[str, ...]  # names no longer in the snapshot, sorted

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


def snapshot_change(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> SnapshotChange:
    """The entries of ``new`` that ``old`` lacks or holds differently, and the names it drops."""
    changed = {name: entry for name, entry in new.items() if old.get(name) != entry}
    removed = tuple(sorted(name for name in old if name not in new))
    return SnapshotChange(changed=changed, removed=removed)


def change_apply(entries: Mapping[str, bytes], change: SnapshotChange) -> dict[str, bytes]:
    """The entries after ``change`` (what a client holding ``entries`` does with the event)."""
    result = {name: entry for name, entry in entries.items() if name not in change.removed}
    result.update(change.changed)
    return result


def change_data(change: SnapshotChange, *, generated_at: str) -> bytes:
    """The JSON of a ``change`` event: ``{format, generated_at, prompts: {name: entry}, removed:
    [name]}``."""
    prompts = b",".join(orjson.dumps(name) + b":" + entry for name, entry in change.changed.items())
    return b"".join(
        (
            FORMAT_FIELD,
            b'"generated_at":',
            orjson.dumps(generated_at),
            b',"prompts":{',
            prompts,
            b'},"removed":',
            orjson.dumps(list(change.removed)),
            b"}",
        )
    )


def sse_event(event: str, event_id: str, data: bytes) -> bytes:
    """One Server-Sent Event. ``data`` is compact JSON: one line (orjson escapes newlines)."""
    return b"".join((b"event: ", event.encode(), b"\nid: ", event_id.encode(), b"\ndata: ", data, b"\n\n"))
