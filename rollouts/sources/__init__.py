"""Where a gate's numbers come from: one `Source` per gate `source` name.

A source reads, for one rollout and a time window (the current step's), the per-arm statistics
of the gates that name it, as the engine's `SourceWindow` (baseline and candidate `ArmStats`).
A source that cannot answer — its server is down, slow, misconfigured — raises
`SourceUnavailable` with the cause; the gates that depend on it are then `insufficient_data`
with that cause, never a rollback. An evaluation reads all its sources under one total deadline
(``PROMPTRAMP_EVALUATION_DEADLINE_SECONDS``, 10 s): each source gets what is left of it and
stops there (a server's source at `SOURCE_TIMEOUT_SECONDS` at most), as it is called while the
rollout's row is locked; one whose deadline has passed is not asked.

Gates read from the window of `Gate.reads_from`: their source and, for a named server
(``prometheus:eu``), that server's; each window is read once, with its own gates. A gate stored
with a URL (`Gate.refused`) is read from nowhere.

At a 100% step there is no baseline traffic; a source returns an empty baseline (`ArmStats()`).

Which class reads each source is named in ``settings.PROMPTRAMP_GATE_SOURCES``: the `ingest`
source is the outcomes app's (``outcomes.ingest_source``), above this one, which rollouts never
imports. It is also the ``OutcomeStore`` that rollouts show whole (the API's `arms`) and minute
by minute (the admin's charts).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

from django.conf import settings
from django.utils.module_loading import import_string

from rollouts.engine import SourceWindow
from rollouts.plan import Gate
from rollouts.stats import ArmStats

SOURCE_TIMEOUT_SECONDS = 5.0
INGEST = "ingest"
# The arms a rollout's outcomes are read under: exposed, and a shadow step's runs with the
# baseline outcomes of its sample.
ROLLOUT_ARMS = ("baseline", "candidate", "shadow", "shadow_baseline")
# Outcomes of callers an override served while the rollout was active: shown, never in a gate.
OVERRIDE_ARM = "override"


@dataclass(frozen=True)
class RolloutArms:
    """The rollout a source reads for, as a source matches outcomes to its arms: its id, its
    prompt's name and each arm's version number; and its current split (``threshold``: the
    percent x 100, under which the servers keep the step's distinct units)."""

    rollout_id: int
    prompt: str
    baseline_version: int
    candidate_version: int
    threshold: int = 0
    shadow: bool = False
    """The current step is a shadow step: the candidate's figures are its shadow runs, compared
    with the baseline outcomes of the same units where the source can tell them apart."""


class SourceUnavailable(Exception):
    """A source could not give numbers; ``cause`` says why, in words shown to users."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Source(Protocol):
    def read(
        self,
        *,
        rollout: RolloutArms,
        gates: Sequence[Gate],
        since: datetime,
        until: datetime,
        deadline: float,
    ) -> SourceWindow:
        """Per-arm statistics of ``rollout`` between ``since`` and ``until`` for ``gates``
        (those of this source and server), answered by ``deadline`` (``time.monotonic()``).
        Raises SourceUnavailable."""
        ...


class OutcomeStore(Source, Protocol):
    """The `ingest` source: outcomes reported to promptramp, kept per rollout, arm and minute."""

    def arm_stats(
        self,
        *,
        rollout_id: int,
        since: datetime | None = None,
        until: datetime | None = None,
        arms: tuple[str, ...] = ROLLOUT_ARMS,
    ) -> dict[str, ArmStats]:
        """``{"baseline": …, "candidate": …, "shadow": …, "shadow_baseline": …}`` (the last
        two: a shadow step's runs and the baseline outcomes of its sample), or of ``arms``: every
        outcome of the rollout when ``since`` and ``until`` are None, else those of the minutes
        overlapping ``[since, until)``."""
        ...

    def arm_series(
        self, *, rollout_id: int, since: datetime, until: datetime
    ) -> list[tuple[datetime, str, ArmStats]]:
        """``(minute, arm, ArmStats)`` of each minute of each arm with outcomes, oldest first."""
        ...


def source(name: str) -> Source:
    """The reader of the gate source ``name`` (SourceUnavailable when none is installed)."""
    path = settings.PROMPTRAMP_GATE_SOURCES.get(name)
    if path is None:
        raise SourceUnavailable(f"the {name} source is not available in this installation")
    made: Source = import_string(path)()
    return made


def outcome_store() -> OutcomeStore:
    """The `ingest` source, which settings must name (outcomes.ingest_source.IngestSource)."""
    return cast(OutcomeStore, source(INGEST))


def read_windows(
    *, rollout: RolloutArms, gates: Sequence[Gate], since: datetime, until: datetime
) -> dict[str, SourceWindow]:
    """Every window the gates read from (`Gate.reads_from`), read once under the evaluation's
    deadline: its numbers, or an empty one carrying the cause. The ingest source is always read:
    the traffic check reads its outcomes and exposures (and with no gates, its sample counts
    still hold a step)."""
    seconds = float(settings.PROMPTRAMP_EVALUATION_DEADLINE_SECONDS)
    deadline = time.monotonic() + seconds
    readable = [gate for gate in gates if gate.refused is None]
    windows: dict[str, SourceWindow] = {}
    for key in sorted({gate.reads_from for gate in readable} | {INGEST}):
        own_gates = [gate for gate in readable if gate.reads_from == key]
        name = own_gates[0].source if own_gates else INGEST
        try:
            if time.monotonic() >= deadline:
                raise SourceUnavailable(f"not read: the evaluation's {seconds:g} s deadline had passed")
            windows[key] = source(name).read(
                rollout=rollout, gates=own_gates, since=since, until=until, deadline=deadline
            )
        except SourceUnavailable as unavailable:
            windows[key] = SourceWindow(ArmStats(), ArmStats(), error=unavailable.cause)
    return windows
