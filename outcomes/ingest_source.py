"""The `ingest` gate source: outcomes reported to promptramp (`POST /api/v1/events`), read from
the per-minute aggregates this app keeps for each rollout and arm (``outcomes.selectors``).
In a shadow step the gates compare the shadow runs (arm ``shadow``) with the baseline outcomes
of the same units (``shadow_baseline``: baseline events marked ``shadow_sample``), and the traffic
check the shadow runs' outcomes per exposure with every baseline outcome per baseline exposure.
The rollout controller finds it through ``settings.PROMPTRAMP_GATE_SOURCES`` (see
``rollouts.sources``): rollouts does not import this app, this app imports rollouts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from redis.exceptions import RedisError

from outcomes import selectors
from outcomes.exposures import exposures_read
from outcomes.validation import SHADOW, SHADOW_BASELINE
from rollouts.engine import SourceWindow
from rollouts.plan import Gate
from rollouts.sources import ROLLOUT_ARMS, RolloutArms
from rollouts.stats import ArmStats


class IngestSource:
    """A ``rollouts.sources.OutcomeStore``."""

    def read(
        self,
        *,
        rollout: RolloutArms,
        gates: Sequence[Gate],
        since: datetime,
        until: datetime,
        deadline: float,
    ) -> SourceWindow:
        """One query of this database's aggregates and one Redis pipeline for the exposures
        (the traffic check's): neither waits on another server, so ``deadline`` is not needed."""
        arms = selectors.arm_stats(rollout_id=rollout.rollout_id, since=since, until=until)
        try:
            exposures = exposures_read(
                rollout_id=rollout.rollout_id,
                threshold=rollout.threshold,
                since=since,
                until=until,
                shadow=rollout.shadow,
            )
        except RedisError:
            exposures = None  # the traffic check then counts outcomes, as without exposure counts
        if rollout.shadow:
            return SourceWindow(
                baseline=arms[SHADOW_BASELINE],
                candidate=arms[SHADOW],
                exposures=exposures,
                # every caller's baseline exposure is counted: so are all its outcomes
                baseline_reports=arms["baseline"].samples + arms[SHADOW_BASELINE].samples,
            )
        return SourceWindow(baseline=arms["baseline"], candidate=arms["candidate"], exposures=exposures)

    def arm_stats(
        self,
        *,
        rollout_id: int,
        since: datetime | None = None,
        until: datetime | None = None,
        arms: tuple[str, ...] = ROLLOUT_ARMS,
    ) -> dict[str, ArmStats]:
        return selectors.arm_stats(rollout_id=rollout_id, since=since, until=until, arms=arms)

    def arm_series(
        self, *, rollout_id: int, since: datetime, until: datetime
    ) -> list[tuple[datetime, str, ArmStats]]:
        return selectors.arm_series(rollout_id=rollout_id, since=since, until=until)
