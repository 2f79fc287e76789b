"""The second approver in the rollout services: on a prompt that requires one, the author of the
candidate version cannot start its rollout (created with start, or started later) nor promote it
past a manual step; another owner can. What the controller does needs no second approver."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from audit.models import AuditEntry
from core.errors import DomainError
from registry.errors import SecondApproverRequired
from registry.models import Label
from registry.services import prompt_create, prompt_update, version_create
from rollouts.controller import rollout_evaluate
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_abort, rollout_create, rollout_promote, rollout_rollback, rollout_start
from tests.factories import UserFactory, actor_for

pytestmark = pytest.mark.django_db
NAME = "support.answer"
MANUAL_PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200, "approval": "manual"},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
AUTO_PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 3600, "min_samples": 0},
]


@pytest.fixture
def prompt(alice: Any, bob: Any) -> Any:
    """support.answer requiring a second approver, owned by alice and bob; alice published v1
    (production) and v2."""
    prompt = prompt_create(actor=actor_for(alice), name=NAME, owners=["bob"], require_second_approver=True)
    for n in (1, 2):
        version_create(actor=actor_for(alice), prompt_name=NAME, template=f"v{n} {{{{question}}}}")
    return prompt


def create(user: Any, **kwargs: Any) -> Rollout:
    args: dict[str, Any] = {"prompt_name": NAME, "candidate_version": 2, "plan": AUTO_PLAN}
    return rollout_create(actor=actor_for(user), **(args | kwargs))


def reload(rollout: Rollout) -> Rollout:
    return Rollout.objects.get(pk=rollout.pk)


def production() -> int:
    return Label.objects.get(prompt__name=NAME, name="production").version.version


def test_the_author_cannot_create_a_started_rollout_and_nothing_is_created(alice, prompt):
    with pytest.raises(SecondApproverRequired) as refused:
        create(alice)

    assert refused.value.code == "second_approver_required"
    assert "someone other than alice must start its rollout" in str(refused.value)
    assert not Rollout.objects.exists()
    assert not AuditEntry.objects.filter(object_type="rollout").exists()
    assert production() == 1


def test_another_owner_creates_and_starts_it(bob, prompt):
    rollout = create(bob)

    assert (rollout.state, rollout.percent) == ("running", 10)
    assert RolloutTransition.objects.get(rollout=rollout).actor_name == "bob"


def test_the_author_creates_it_pending_and_another_owner_starts_it(alice, bob, prompt):
    rollout = create(alice, start=False)
    assert rollout.state == "pending"

    with pytest.raises(SecondApproverRequired):
        rollout_start(actor=actor_for(alice), rollout_id=rollout.pk)
    assert (reload(rollout).state, reload(rollout).percent) == ("pending", 0)
    assert not RolloutTransition.objects.filter(rollout=rollout).exists()

    started = rollout_start(actor=actor_for(bob), rollout_id=rollout.pk, reason="reviewed v2")

    assert (started.state, started.percent) == ("running", 10)
    entry = AuditEntry.objects.get(action="rollout.started")
    assert (entry.actor_name, entry.reason) == ("bob", "reviewed v2")


def test_a_start_by_the_rollouts_creator_counts_as_theirs(alice, bob, prompt):
    """The tick starts a rollout whose required checks passed as its creator: the creator is
    the one who must not be the author."""
    by_author = create(alice, start=False)
    creator = by_author.created_by
    with pytest.raises(SecondApproverRequired):
        rollout_start(actor=actor_for(creator), rollout_id=by_author.pk)
    rollout_abort(actor=actor_for(alice), rollout_id=by_author.pk)

    by_reviewer = create(bob, start=False)
    started = rollout_start(actor=actor_for(by_reviewer.created_by), rollout_id=by_reviewer.pk)
    assert started.state == "running"


def test_the_author_cannot_promote_past_a_manual_step_and_another_owner_can(alice, bob, prompt):
    rollout = create(bob, plan=MANUAL_PLAN)

    with pytest.raises(SecondApproverRequired) as refused:
        rollout_promote(actor=actor_for(alice), rollout_id=rollout.pk)

    assert "someone other than alice must approve step 1 of its rollout" in str(refused.value)
    assert (reload(rollout).step_index, reload(rollout).percent) == (0, 10)
    assert RolloutTransition.objects.filter(rollout=rollout).count() == 1

    promoted = rollout_promote(actor=actor_for(bob), rollout_id=rollout.pk, reason="approved")

    assert (promoted.step_index, promoted.percent) == (1, 100)


def test_a_manual_step_of_a_paused_rollout_needs_the_second_approver_too(alice, bob, prompt):
    rollout = create(bob, plan=MANUAL_PLAN)
    Rollout.objects.filter(pk=rollout.pk).update(state="paused")

    with pytest.raises(SecondApproverRequired):
        rollout_promote(actor=actor_for(alice), rollout_id=rollout.pk)
    assert reload(rollout).state == "paused"


def test_the_author_may_promote_automatic_steps_of_a_rollout_someone_else_started(alice, bob, prompt):
    rollout = create(bob)

    rollout_promote(actor=actor_for(alice), rollout_id=rollout.pk)
    done = rollout_promote(actor=actor_for(alice), rollout_id=rollout.pk)

    assert done.state == "succeeded"
    assert production() == 2


def test_the_controllers_success_moves_production_without_a_second_approver(bob, prompt):
    rollout = create(bob, plan=[{"percent": 100, "min_duration_s": 0, "min_samples": 0}])

    decision = rollout_evaluate(rollout_id=rollout.pk)

    assert decision is not None and decision.action == "succeed"
    assert reload(rollout).state == "succeeded"
    assert production() == 2
    move = AuditEntry.objects.filter(action="label.move", object_id="production").latest("id")
    assert (move.actor_name, move.data["to_version"]) == ("system", 2)


def test_the_author_may_roll_back(alice, bob, prompt):
    rollout = create(bob)

    rollout_rollback(actor=actor_for(alice), rollout_id=rollout.pk, reason="it looks wrong")

    assert reload(rollout).state == "rolled_back"
    assert production() == 1


def test_once_an_admin_turns_it_off_the_author_starts_their_rollout(alice, prompt):
    root = UserFactory(username="root", is_superuser=True)
    prompt_update(actor=actor_for(root), prompt_name=NAME, require_second_approver=False)

    assert create(alice).state == "running"


@pytest.mark.django_db(transaction=True)
def test_the_author_and_another_owner_starting_at_once_start_it_once_as_the_other_owner(alice, bob, prompt):
    rollout = create(alice, start=False)
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def attempt(user: Any) -> None:
        try:
            barrier.wait()
            rollout_start(actor=actor_for(user), rollout_id=rollout.pk)
            outcomes[user.username] = "started"
        except DomainError as error:
            outcomes[user.username] = error.code
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(user,)) for user in (alice, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes["bob"] == "started"
    # alice is refused as the author, or finds it already running if bob's start came first
    assert outcomes["alice"] in ("second_approver_required", "invalid_state")
    assert [t.actor_name for t in RolloutTransition.objects.filter(rollout=rollout)] == ["bob"]
