"""Reads of rollouts: lists, one rollout with its live statistics and history, the rollouts
the controller evaluates next, and the locked reads that every change of a rollout starts with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Q, QuerySet

from registry.models import Prompt
from registry.selectors import prompt_get
from rollouts.errors import RolloutNotFound, WebhookNotFound
from rollouts.models import Rollout, RolloutCheck, RolloutTransition, Webhook
from rollouts.sources import OVERRIDE_ARM, ROLLOUT_ARMS, outcome_store
from rollouts.stats import ArmStats


def rollout_list(*, state: str | None = None, prompt: str | None = None) -> QuerySet[Rollout]:
    rollouts = Rollout.objects.select_related("prompt", "baseline", "candidate").prefetch_related("checks")
    if state:
        rollouts = rollouts.filter(state=state)
    if prompt:
        rollouts = rollouts.filter(prompt__name=prompt)
    return rollouts.order_by("-created_at", "-id")


def rollout_list_for_prompt(*, prompt_name: str) -> QuerySet[Rollout]:
    return rollout_list(prompt=prompt_get(prompt_name).name)


def rollout_get(rollout_id: int) -> Rollout:
    rollout = rollout_list().filter(pk=rollout_id).first()
    if rollout is None:
        raise RolloutNotFound(f"Rollout {rollout_id} does not exist.")
    return rollout


def rollout_get_locked(rollout_id: int) -> Rollout:
    """The rollout with its prompt and versions, its row locked until the transaction ends (it
    waits for a transaction holding it: an evaluation or another action in progress). Inside a
    transaction; the caller then checks the state it expects."""
    rollout = (
        Rollout.objects.select_for_update(of=("self",))
        .select_related("prompt", "baseline", "candidate")
        .filter(pk=rollout_id)
        .first()
    )
    if rollout is None:
        raise RolloutNotFound(f"Rollout {rollout_id} does not exist.")
    return rollout


def rollout_list_claimed(*, rollout_ids: Sequence[int], state: str) -> QuerySet[Rollout]:
    """Those of ``rollout_ids`` in ``state``, by id, with their prompt and versions, their rows
    locked when the query is read; a row another transaction holds (another worker's evaluation,
    a person's action) is left out, not waited for (``skip_locked``). Inside a transaction."""
    return (
        Rollout.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("prompt", "baseline", "candidate")
        .filter(pk__in=rollout_ids, state=state)
        .order_by("id")
    )


EXPOSED_ARMS = ("baseline", "candidate")


@dataclass(frozen=True)
class RolloutWithStats:
    rollout: Rollout
    arms: dict[str, ArmStats]  # baseline and candidate
    override_outcomes: ArmStats  # of callers an override served: apart, in no gate
    history: list[RolloutTransition]


def rollout_get_with_stats(rollout_id: int) -> RolloutWithStats:
    """The rollout, every outcome reported for it so far per arm (and apart, those of callers
    an override served), and its transitions. The shadow arms (``shadow``, ``shadow_baseline``)
    are there when its plan has a shadow step."""
    rollout = rollout_get(rollout_id)
    shadowed = any(step.get("shadow") for step in rollout.plan)
    arms = outcome_store().arm_stats(rollout_id=rollout.pk, arms=(*ROLLOUT_ARMS, OVERRIDE_ARM))
    overridden = arms.pop(OVERRIDE_ARM)
    return RolloutWithStats(
        rollout=rollout,
        arms={arm: stats for arm, stats in arms.items() if arm in EXPOSED_ARMS or shadowed or stats.samples},
        override_outcomes=overridden,
        history=list(rollout.transitions.order_by("at", "id")),
    )


def rollout_holding_production(prompt: Prompt) -> str | None:
    """Why ``production`` of ``prompt`` is not to be moved by hand: its active rollout holds it
    (one of settings.PROMPTRAMP_PRODUCTION_HOLDERS, asked by registry.services)."""
    if Rollout.objects.filter(prompt=prompt, state__in=Rollout.ACTIVE_STATES).exists():
        return (
            f"'production' of '{prompt.name}' belongs to its active rollout: promote, roll back "
            "or abort the rollout instead."
        )
    return None


def rollout_ids_to_evaluate(*, limit: int) -> list[int]:
    """Running rollouts, least recently evaluated first (a tick evaluates at most ``limit``)."""
    running = Rollout.objects.filter(state=Rollout.State.RUNNING)
    ordered = running.order_by(F("last_evaluated_at").asc(nulls_first=True), "id")
    return list(ordered.values_list("pk", flat=True)[:limit])


def rollout_ids_waiting_for_checks(*, limit: int) -> list[int]:
    """Pending rollouts with required checks that the tick has something to do for (rollouts.checks
    evaluates them): a check not yet passed, or a start due once all passed. Oldest first."""
    checks = RolloutCheck.objects.filter(rollout=OuterRef("pk"))
    waiting = Rollout.objects.filter(state=Rollout.State.PENDING).filter(
        Exists(checks.exclude(status=RolloutCheck.Status.PASS))
        | (Q(start_after_checks=True) & Exists(checks))
    )
    return list(waiting.order_by("id").values_list("pk", flat=True)[:limit])


def webhook_list() -> QuerySet[Webhook]:
    return Webhook.objects.order_by("id")


def webhook_get(webhook_id: int) -> Webhook:
    webhook = Webhook.objects.filter(pk=webhook_id).first()
    if webhook is None:
        raise WebhookNotFound(f"Webhook {webhook_id} does not exist.")
    return webhook
