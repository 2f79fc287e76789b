"""Where a gate's numbers come from: one `Source` per gate `source` name.

A source reads, for one rollout and a time window (the current step's), the per-arm statistics
of the gates that name it, as the engine's `SourceWindow` (baseline and candidate `ArmStats`).
A source that cannot answer — its server is down, slow, misconfigured — raises
`SourceUnavailable` with the cause; the gates that depend on it are then `insufficient_data`
with that cause, never a rollback. A source bounds its own waiting (HTTP timeouts within
`SOURCE_TIMEOUT_SECONDS`): it is called while the rollout's row is locked.

At a 100% step there is no baseline traffic; a source returns an empty baseline (`ArmStats()`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rollouts.engine import SourceWindow
from rollouts.plan import Gate
from rollouts.stats import ArmStats

SOURCE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class RolloutArms:
    """The rollout a source reads for, as a source matches outcomes to its arms: its id, its
    prompt's name and each arm's version number."""

    rollout_id: int
    prompt: str
    baseline_version: int
    candidate_version: int


class SourceUnavailable(Exception):
    """A source could not give numbers; ``cause`` says why, in words shown to users."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Source(Protocol):
    def read(
        self, *, rollout: RolloutArms, gates: Sequence[Gate], since: datetime, until: datetime
    ) -> SourceWindow:
        """Per-arm statistics of ``rollout`` between ``since`` and ``until`` for ``gates``
        (those of this source). Raises SourceUnavailable."""
        ...


def _ingest() -> Source:
    from rollouts.sources.ingest import IngestSource

    return IngestSource()


def _langfuse() -> Source:
    from rollouts.sources.langfuse import LangfuseSource

    return LangfuseSource()


def _prometheus() -> Source:
    from rollouts.sources.prometheus import PrometheusSource

    return PrometheusSource()


# Each gate source name and how to make its reader.
SOURCES: Mapping[str, Callable[[], Source]] = {
    "ingest": _ingest,
    "langfuse": _langfuse,
    "prometheus": _prometheus,
}


def read_windows(
    *, rollout: RolloutArms, gates: Sequence[Gate], since: datetime, until: datetime
) -> dict[str, SourceWindow]:
    """Every source the gates name, read once: its window, or an empty one carrying the cause.
    With no gates, the ingest source is read (sample counts still hold a step)."""
    windows: dict[str, SourceWindow] = {}
    for name in sorted({gate.source for gate in gates} or {"ingest"}):
        own_gates = [gate for gate in gates if gate.source == name]
        try:
            make = SOURCES.get(name)
            if make is None:
                raise SourceUnavailable(f"the {name} source is not available in this installation")
            windows[name] = make().read(rollout=rollout, gates=own_gates, since=since, until=until)
        except SourceUnavailable as unavailable:
            windows[name] = SourceWindow(ArmStats(), ArmStats(), error=unavailable.cause)
    return windows
