"""The `ingest` source: outcomes reported to promptramp (`POST /api/v1/events`), read from the
per-minute aggregates the outcomes app keeps for each rollout and arm."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from outcomes.selectors import arm_stats
from rollouts.engine import SourceWindow
from rollouts.plan import Gate
from rollouts.sources import RolloutArms
from rollouts.stats import ArmStats


class IngestSource:
    def read(
        self, *, rollout: RolloutArms, gates: Sequence[Gate], since: datetime, until: datetime
    ) -> SourceWindow:
        arms = arm_stats(rollout_id=rollout.rollout_id, since=since, until=until)
        return SourceWindow(
            baseline=arms.get("baseline", ArmStats()), candidate=arms.get("candidate", ArmStats())
        )
