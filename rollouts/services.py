"""Rollouts: create one, and a person's actions on it (start, pause, resume, promote, roll back,
abort). The controller's evaluations are in rollouts.controller; what every transition writes is
in rollouts.transitions.

A rollout changes state only while its row is locked and in the state the change expects: a
person's action waits for the lock (`select_for_update`), so it never races an evaluation. An
action may also say which state and step it was asked for (`expected_state`,
`expected_step_index`, checked under the same lock): a click sent twice, or after someone else
acted, changes nothing and raises StaleRequest.

On a prompt that requires a second approver (registry.approvals), starting a rollout and
promoting it past a manual step are refused (SecondApproverRequired, nothing changed) to the
author of its candidate version.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.actions import AuditAction
from audit.services import audit_record
from core.actors import Actor
from core.errors import ValidationFailed
from core.state_cache import SERVING_STATE, state_changed
from registry.approvals import ensure_second_approver
from registry.models import PRODUCTION, Label
from registry.selectors import prompt_get
from registry.services import ensure_owner
from rollouts.check_rules import PASS, ChecksError, parse_checks_timeout, parse_required_checks
from rollouts.controller import rollout_decide
from rollouts.engine import FAIL, Action
from rollouts.errors import (
    ChecksPending,
    GateFailing,
    NoProduction,
    RolloutActive,
    RolloutStateError,
    StaleRequest,
)
from rollouts.models import Rollout, RolloutCheck
from rollouts.plan import (
    DEFAULT_GATES,
    DEFAULT_PLAN,
    ConfigError,
    Gate,
    GateServers,
    Plan,
    TrafficCheck,
    parse_gates,
)
from rollouts.selectors import rollout_get_locked
from rollouts.transitions import rollout_apply_decision, rollout_end, rollout_transition
from rollouts.webhooks import outbox_enqueue_checks_requested

ACTIVE_INDEX = "one_active_rollout_per_prompt"
MAX_REASON = 10_000
S = Rollout.State


# --- validation -----------------------------------------------------------------------------


def _config(plan: object, gates: object) -> tuple[Plan, tuple[Gate, ...]]:
    try:
        clean_plan = DEFAULT_PLAN if plan is None else Plan.from_json(plan)
        clean_gates = DEFAULT_GATES if gates is None else parse_gates(gates, servers=_gate_servers())
    except ConfigError as error:
        raise ValidationFailed(str(error), details={"field": error.field}) from None
    if "\\u0000" in json.dumps([gate.to_json() for gate in clean_gates]):
        raise ValidationFailed("Gates may not contain NUL characters.", details={"field": "gates"})
    return clean_plan, clean_gates


def _gate_servers() -> GateServers:
    """The servers gates may name: those settings name (and each source's default)."""
    return GateServers(
        prometheus=frozenset(settings.PROMPTRAMP_PROMETHEUS_SERVERS),
        langfuse=frozenset(settings.PROMPTRAMP_LANGFUSE_PROJECTS),
    )


def _reason(reason: object) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ValidationFailed("'reason' must be a string of at most 10,000 characters.")
    return reason


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationFailed(f"'{name}' must be a positive integer.")
    return value


@dataclass(frozen=True)
class Expected:
    """What the person acting saw: the action applies only to a rollout still in that state and
    at that step (None: whatever it is)."""

    state: str | None = None
    step_index: int | None = None

    @classmethod
    def parse(cls, state: object, step_index: object) -> Expected:
        if state is not None and state not in S.values:
            raise ValidationFailed(
                f"'expected_state' must be one of {', '.join(S.values)}.", details={"field": "expected_state"}
            )
        if step_index is not None and (
            isinstance(step_index, bool) or not isinstance(step_index, int) or step_index < 0
        ):
            raise ValidationFailed(
                "'expected_step_index' must be an integer of at least 0.",
                details={"field": "expected_step_index"},
            )
        return cls(state=state, step_index=step_index)


def _locked(
    rollout_id: int, actor: Actor, allowed: Collection[str], action: str, expected: Expected
) -> Rollout:
    """The rollout, locked (waiting for an evaluation in progress), owned by the actor, as the
    actor ``expected`` it and in one of the ``allowed`` states."""
    rollout = rollout_get_locked(rollout_id)
    ensure_owner(actor, rollout.prompt)
    if (expected.state is not None and rollout.state != expected.state) or (
        expected.step_index is not None and rollout.step_index != expected.step_index
    ):
        raise StaleRequest(
            f"The rollout is {rollout.state} at step {rollout.step_index + 1} of {len(rollout.plan)}, not as "
            f"the request expected: nothing was done (reload to see what changed).",
            details={
                "state": rollout.state,
                "step_index": rollout.step_index,
                "expected_state": expected.state,
                "expected_step_index": expected.step_index,
            },
        )
    if rollout.state not in allowed:
        raise RolloutStateError(
            f"A {rollout.state} rollout cannot {action}.",
            details={"state": rollout.state, "allowed_states": sorted(allowed)},
        )
    return rollout


def rollout_create(
    *,
    actor: Actor,
    prompt_name: str,
    candidate_version: object,
    plan: object = None,
    gates: object = None,
    traffic: object = None,
    start: object = True,
    salt: object = None,
    reason: object = "",
    required_checks: object = None,
    checks_timeout_s: object = None,
) -> Rollout:
    """A rollout of ``candidate_version`` against the prompt's production version, started at
    once unless ``start`` is false. Gates given replace the default gates; ``traffic``
    configures the built-in traffic check (`TrafficCheck`).

    With ``required_checks`` it waits in ``pending`` until each is reported passing
    (rollouts.checks; started then if ``start``) and the webhook event
    ``rollout.checks_requested`` asks for them."""
    candidate_number = _positive_int(candidate_version, "candidate_version")
    clean_plan, clean_gates = _config(plan, gates)
    try:
        clean_traffic = TrafficCheck.from_json(traffic)
    except ConfigError as error:
        raise ValidationFailed(str(error), details={"field": error.field}) from None
    try:
        check_names = parse_required_checks(required_checks)
        timeout_s = parse_checks_timeout(checks_timeout_s)
    except ChecksError as error:
        raise ValidationFailed(str(error), details={"field": error.field}) from None
    if not isinstance(start, bool):
        raise ValidationFailed("'start' must be true or false.")
    if salt is not None and (not isinstance(salt, str) or len(salt) > 200):
        raise ValidationFailed("'salt' must be a string of at most 200 characters.")
    clean_reason = _reason(reason)
    now = timezone.now()
    with transaction.atomic():
        prompt = prompt_get(prompt_name, for_update=True)
        ensure_owner(actor, prompt)
        production = Label.objects.filter(prompt=prompt, name=PRODUCTION).select_related("version").first()
        if production is None:
            raise NoProduction(f"Prompt '{prompt.name}' has no production version to roll out against.")
        candidate = prompt.versions.filter(version=candidate_number).first()
        if candidate is None:
            raise ValidationFailed(
                f"Prompt '{prompt.name}' has no version {candidate_number}.",
                details={"candidate_version": candidate_number},
            )
        if candidate.pk == production.version_id:
            raise ValidationFailed(
                f"Version {candidate_number} is already production: the candidate must differ.",
                details={"candidate_version": candidate_number},
            )
        if start:  # the creator starts it, now or (after required checks) at a tick
            ensure_second_approver(actor=actor, prompt=prompt, version=candidate, action="start its rollout")
        try:
            with transaction.atomic():
                rollout = Rollout.objects.create(
                    prompt=prompt,
                    baseline=production.version,
                    candidate=candidate,
                    plan=clean_plan.to_json(),
                    gates=[gate.to_json() for gate in clean_gates],
                    traffic=clean_traffic.to_json(),
                    salt=salt or "",
                    created_by_id=actor.user_id,
                    checks_timeout_s=timeout_s,
                    start_after_checks=bool(check_names) and start,
                )
        except IntegrityError as error:
            if ACTIVE_INDEX not in str(error):
                raise
            raise RolloutActive(
                f"Prompt '{prompt.name}' already has an active rollout: finish it first."
            ) from None
        if not salt:
            rollout.salt = f"{prompt.name}:{rollout.pk}"
            rollout.save(update_fields=["salt"])
        RolloutCheck.objects.bulk_create(RolloutCheck(rollout=rollout, name=name) for name in check_names)
        audit_record(
            actor=actor,
            action=AuditAction.ROLLOUT_CREATE,
            prompt_name=prompt.name,
            object_type="rollout",
            object_id=rollout.pk,
            reason=clean_reason,
            data={
                "baseline_version": production.version.version,
                "candidate_version": candidate_number,
                "plan": rollout.plan,
                "gates": rollout.gates,
                "traffic": rollout.traffic,
                "salt": rollout.salt,
                "required_checks": list(check_names),
                "checks_timeout_s": timeout_s,
            },
        )
        state_changed(SERVING_STATE, [prompt.name])
        if check_names:
            outbox_enqueue_checks_requested(rollout=rollout, now=now)
        elif start:
            _start(rollout, actor=actor, now=now, reason=clean_reason)
    return rollout


def _ensure_checks_passed(rollout: Rollout) -> None:
    """ChecksPending unless every required check of the rollout has been reported passing."""
    waiting = list(rollout.checks.exclude(status=PASS).values_list("name", "status"))
    if waiting:
        raise ChecksPending(
            "The rollout starts only once every required check has passed; not yet: "
            + ", ".join(f"{name} ({status})" for name, status in waiting),
            details={"checks": [{"name": name, "status": status} for name, status in waiting]},
        )


def _start(rollout: Rollout, *, actor: Actor, now: datetime, reason: str) -> None:
    """Start a pending rollout the caller has locked: every start goes through here (create with
    ``start``, a person's start, the tick's once the required checks pass, with the rollout's
    creator as ``actor``), so the second approver is asked here."""
    ensure_second_approver(
        actor=actor, prompt=rollout.prompt, version=rollout.candidate, action="start its rollout"
    )
    rollout_transition(
        rollout=rollout,
        actor=actor,
        event="started",
        to_state=S.RUNNING,
        now=now,
        reason=reason,
        step_index=0,
        percent=Plan.from_json(rollout.plan).steps[0].exposed_percent,
        started_at=now,
        step_started_at=now,
    )


def rollout_start(
    *,
    actor: Actor,
    rollout_id: int,
    reason: object = "",
    expected_state: object = None,
    expected_step_index: object = None,
) -> Rollout:
    clean_reason = _reason(reason)
    expected = Expected.parse(expected_state, expected_step_index)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.PENDING], "start", expected)
        _ensure_checks_passed(rollout)
        _start(rollout, actor=actor, now=timezone.now(), reason=clean_reason)
    return rollout


def rollout_pause(
    *,
    actor: Actor,
    rollout_id: int,
    reason: object = "",
    expected_state: object = None,
    expected_step_index: object = None,
) -> Rollout:
    """Keep the current split and stop evaluating until resumed."""
    clean_reason = _reason(reason)
    expected = Expected.parse(expected_state, expected_step_index)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.RUNNING], "pause", expected)
        rollout_transition(
            rollout=rollout,
            actor=actor,
            event="paused",
            to_state=S.PAUSED,
            now=timezone.now(),
            reason=clean_reason,
        )
    return rollout


def rollout_resume(
    *,
    actor: Actor,
    rollout_id: int,
    reason: object = "",
    expected_state: object = None,
    expected_step_index: object = None,
) -> Rollout:
    """Run again; the current step starts over: its clock and its statistics window."""
    clean_reason = _reason(reason)
    expected = Expected.parse(expected_state, expected_step_index)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.PAUSED], "resume", expected)
        now = timezone.now()
        rollout_transition(
            rollout=rollout,
            actor=actor,
            event="resumed",
            to_state=S.RUNNING,
            now=now,
            reason=clean_reason,
            step_started_at=now,
        )
    return rollout


def rollout_promote(
    *,
    actor: Actor,
    rollout_id: int,
    reason: object = "",
    expected_state: object = None,
    expected_step_index: object = None,
) -> Rollout:
    """Advance one step now, past manual approval, the step's wait, its min_samples and
    insufficient_data, but never past a failing gate (GateFailing names it). Promoting the last
    step makes the candidate production. Past a manual step, on a prompt that requires a second
    approver, not by the candidate's author."""
    clean_reason = _reason(reason)
    expected = Expected.parse(expected_state, expected_step_index)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.RUNNING, S.PAUSED], "be promoted", expected)
        if rollout.plan[rollout.step_index].get("approval") == "manual":
            ensure_second_approver(
                actor=actor,
                prompt=rollout.prompt,
                version=rollout.candidate,
                action=f"approve step {rollout.step_index + 1} of its rollout",
            )
        now = timezone.now()
        decision = rollout_decide(rollout=rollout, now=now, promote=True)
        if decision.action not in (Action.ADVANCE, Action.SUCCEED):
            acting = decision.conditions.gates.failing  # not a check that only observes
            failing = [v for v in decision.verdicts if v.verdict == FAIL and v.metric in acting]
            names = ", ".join(v.metric for v in failing)
            raise GateFailing(
                f"Cannot promote past a failing gate ({names}): {decision.reason}",
                details={"verdicts": [v.to_json() for v in failing]},
            )
        rollout_apply_decision(rollout=rollout, decision=decision, actor=actor, now=now, reason=clean_reason)
    return rollout


def rollout_rollback(
    *,
    actor: Actor,
    rollout_id: int,
    reason: object = "",
    expected_state: object = None,
    expected_step_index: object = None,
) -> Rollout:
    """End the rollout: every user back on the baseline at once."""
    clean_reason = _reason(reason)
    expected = Expected.parse(expected_state, expected_step_index)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, [S.RUNNING, S.PAUSED], "be rolled back", expected)
        rollout_end(
            rollout=rollout,
            actor=actor,
            event="rolled_back",
            to_state=S.ROLLED_BACK,
            now=timezone.now(),
            reason=clean_reason or f"rolled back by {actor.name}",
        )
    return rollout


def rollout_abort(
    *,
    actor: Actor,
    rollout_id: int,
    reason: object = "",
    expected_state: object = None,
    expected_step_index: object = None,
) -> Rollout:
    """End the rollout without a verdict: every user back on the baseline."""
    clean_reason = _reason(reason)
    expected = Expected.parse(expected_state, expected_step_index)
    with transaction.atomic():
        rollout = _locked(rollout_id, actor, Rollout.ACTIVE_STATES, "be aborted", expected)
        rollout_end(
            rollout=rollout,
            actor=actor,
            event="aborted",
            to_state=S.ABORTED,
            now=timezone.now(),
            reason=clean_reason or f"aborted by {actor.name}",
        )
    return rollout
