"""The second approver in the rollouts API: a create with `start: true`, `POST …/start` and a
promote past a manual step answer 403 `second_approver_required` to the candidate's author and
change nothing; the same request by another owner goes through."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEntry
from registry.services import prompt_create, version_create
from rollouts.models import Rollout, RolloutTransition
from tests.factories import actor_for

pytestmark = pytest.mark.django_db
NAME = "support.answer"
ROLLOUTS = f"/api/v1/prompts/{NAME}/rollouts"
PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200, "approval": "manual"},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.fixture(autouse=True)
def prompt(alice: Any, bob: Any) -> Any:
    """support.answer requiring a second approver, owned by alice and bob; alice published v1
    (production) and v2."""
    prompt = prompt_create(actor=actor_for(alice), name=NAME, owners=["bob"], require_second_approver=True)
    for n in (1, 2):
        version_create(actor=actor_for(alice), prompt_name=NAME, template=f"v{n} {{{{question}}}}")
    return prompt


@pytest.fixture
def author(client_with_key: Any, alice: Any) -> Any:
    return client_with_key(alice, "write")


@pytest.fixture
def reviewer(client_with_key: Any, bob: Any) -> Any:
    return client_with_key(bob, "write")


def refused_for_the_author(response: Any) -> None:
    assert response.status_code == 403, response.json()
    error = response.json()["error"]
    assert error["code"] == "second_approver_required"
    assert "v2 was published by alice, so someone other than alice must" in error["message"]


def test_a_started_rollout_is_created_by_another_owner_only(author, reviewer):
    body = {"candidate_version": 2, "plan": PLAN, "start": True}

    refused_for_the_author(author.post(ROLLOUTS, body))
    assert not Rollout.objects.exists()
    assert not AuditEntry.objects.filter(object_type="rollout").exists()

    created = reviewer.post(ROLLOUTS, body)

    assert created.status_code == 201, created.json()
    assert (created.json()["state"], created.json()["percent"]) == ("running", 10)


def test_the_author_creates_it_pending_and_another_owner_starts_it(author, reviewer):
    created = author.post(ROLLOUTS, {"candidate_version": 2, "plan": PLAN, "start": False})
    assert created.status_code == 201, created.json()
    start = f"/api/v1/rollouts/{created.json()['id']}/start"

    refused_for_the_author(author.post(start, {"reason": "mine"}))
    assert Rollout.objects.get().state == "pending"
    assert not RolloutTransition.objects.exists()

    started = reviewer.post(start, {"reason": "reviewed", "expected_state": "pending"})

    assert started.status_code == 200, started.json()
    assert (started.json()["state"], started.json()["percent"]) == ("running", 10)


def test_a_manual_step_is_approved_by_another_owner_only(author, reviewer):
    rollout_id = reviewer.post(ROLLOUTS, {"candidate_version": 2, "plan": PLAN}).json()["id"]
    promote = f"/api/v1/rollouts/{rollout_id}/promote"

    refused_for_the_author(author.post(promote, {"expected_step_index": 0}))
    assert Rollout.objects.get().step_index == 0

    promoted = reviewer.post(promote, {"expected_step_index": 0})

    assert promoted.status_code == 200, promoted.json()
    assert (promoted.json()["step_index"], promoted.json()["percent"]) == (1, 100)


def test_the_author_still_pauses_and_rolls_back(author, reviewer):
    rollout_id = reviewer.post(ROLLOUTS, {"candidate_version": 2, "plan": PLAN}).json()["id"]

    assert author.post(f"/api/v1/rollouts/{rollout_id}/pause", {}).status_code == 200
    assert author.post(f"/api/v1/rollouts/{rollout_id}/rollback", {}).json()["state"] == "rolled_back"
