"""A rollout action says which state and step it was asked for: a promote sent twice (a double
click, a client's retry) or after someone else acted changes nothing and answers 409
`stale_request`, instead of advancing a second step."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from core.errors import DomainError
from rollouts.errors import StaleRequest
from rollouts.models import Rollout
from rollouts.services import rollout_create, rollout_promote
from tests.factories import actor_for, make_prompt

PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 50, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


def running_rollout(owner: Any) -> Rollout:
    make_prompt(owner, versions=2)
    return rollout_create(
        actor=actor_for(owner), prompt_name="support.answer", candidate_version=2, plan=PLAN
    )


def step_of(rollout: Rollout) -> tuple[str, int]:
    rollout.refresh_from_db()
    return rollout.state, rollout.step_index


@pytest.mark.django_db
def test_promote_sent_twice_with_the_same_expectations_advances_one_step(alice, client_with_key):
    rollout = running_rollout(alice)
    writer = client_with_key(alice, "write")
    body = {"expected_state": "running", "expected_step_index": 0}

    first = writer.post(f"/api/v1/rollouts/{rollout.pk}/promote", body, format="json")
    second = writer.post(f"/api/v1/rollouts/{rollout.pk}/promote", body, format="json")

    assert first.status_code == 200
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "stale_request"
    assert error["details"] == {
        "state": "running",
        "step_index": 1,
        "expected_state": "running",
        "expected_step_index": 0,
    }
    assert step_of(rollout) == ("running", 1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("pause", {"expected_state": "paused"}),
        ("rollback", {"expected_step_index": 1}),
        ("abort", {"expected_state": "pending", "expected_step_index": 0}),
    ],
)
def test_an_action_on_a_rollout_that_moved_on_changes_nothing(alice, client_with_key, action, body):
    rollout = running_rollout(alice)
    rollout_entries = AuditEntry.objects.filter(action__startswith="rollout.").count()

    response = client_with_key(alice, "write").post(
        f"/api/v1/rollouts/{rollout.pk}/{action}", body, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "stale_request"
    assert step_of(rollout) == ("running", 0)
    assert AuditEntry.objects.filter(action__startswith="rollout.").count() == rollout_entries


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expected_state": "sleeping"}, "expected_state"),
        ({"expected_step_index": -1}, "expected_step_index"),
        ({"expected_step_index": "first"}, "expected_step_index"),
    ],
)
def test_an_expectation_that_is_no_state_or_step_is_refused(alice, client_with_key, body, field):
    rollout = running_rollout(alice)

    response = client_with_key(alice, "write").post(
        f"/api/v1/rollouts/{rollout.pk}/promote", body, format="json"
    )

    assert response.status_code == 400
    assert field in str(response.json()["error"])
    assert step_of(rollout) == ("running", 0)


def hidden_fields(html: str, action_url: str) -> dict[str, str]:
    form = html[html.index(f'action="{action_url}"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', form))


@pytest.mark.django_db
def test_a_double_click_on_the_admins_promote_button_promotes_once(alice):
    rollout = running_rollout(alice)
    client = Client()
    client.force_login(alice)
    url = reverse("admin:rollouts_rollout_action", args=[rollout.pk, "promote"])
    page = client.get(reverse("admin:rollouts_rollout_change", args=[rollout.pk])).content.decode()
    form = hidden_fields(page, url) | {"reason": "looks good"}
    assert form["expected_state"] == "running"
    assert form["expected_step_index"] == "0"

    client.post(url, form)
    second = client.post(url, form)

    assert step_of(rollout) == ("running", 1)
    [(level, message)] = [(m.level_tag, m.message) for m in get_messages(second.wsgi_request)][-1:]
    assert level == "error"
    assert message.startswith(
        "Could not promote: The rollout is running at step 2 of 3, not as the request expected"
    )


@pytest.mark.django_db(transaction=True)
def test_two_promotes_at_once_with_the_same_expectations_advance_once(alice):
    rollout = running_rollout(alice)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def promote() -> None:
        barrier.wait()
        try:
            rollout_promote(
                actor=actor_for(alice), rollout_id=rollout.pk, expected_state="running", expected_step_index=0
            )
            outcomes.append("promoted")
        except DomainError as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=promote) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["promoted", StaleRequest.code]
    assert step_of(rollout) == ("running", 1)
