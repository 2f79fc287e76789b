"""Rollouts as the serving state sees them, made directly: the rollout services (and their
plans, gates and audit) are not what these tests are about."""

from __future__ import annotations

from decimal import Decimal

from core.state_cache import SERVING_STATE, state_changed
from registry.models import Prompt
from rollouts.models import Rollout


def put_rollout(
    prompt: Prompt,
    *,
    baseline: int = 1,
    candidate: int = 2,
    percent: Decimal | str = "10",
    salt: str = "",
    state: str = Rollout.State.RUNNING,
) -> Rollout:
    rollout = Rollout.objects.create(
        prompt=prompt,
        baseline=prompt.versions.get(version=baseline),
        candidate=prompt.versions.get(version=candidate),
        plan=[{"percent": float(percent), "min_duration_s": 0, "min_samples": 0}],
        gates=[],
        state=state,
        percent=Decimal(percent),
        salt=salt,
    )
    state_changed(SERVING_STATE, [prompt.name])
    return rollout


def set_rollout(rollout: Rollout, **fields: object) -> None:
    Rollout.objects.filter(pk=rollout.pk).update(**fields)
    state_changed(SERVING_STATE, [rollout.prompt.name])
