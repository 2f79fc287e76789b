"""The second approver in the rollout pages of the admin: the start form, the Start button and the
Promote button of a manual step refuse the candidate's author (with the reason, nothing changed)
and work for another owner; the pages say so before anyone clicks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from registry.services import prompt_create, version_create
from rollouts.models import Rollout, RolloutTransition
from rollouts.services import rollout_create
from tests.factories import actor_for

pytestmark = pytest.mark.django_db
NAME = "support.answer"
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


def logged_in(user: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def live_url(rollout: Rollout) -> str:
    return reverse("admin:rollouts_rollout_change", args=[rollout.pk])


def click(client: Client, rollout: Rollout, action: str) -> Any:
    """What a browser does: open the live page, post the action's form with its CSRF token and
    the hidden state and step fields."""
    page = client.get(live_url(rollout)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    return client.post(
        reverse("admin:rollouts_rollout_action", args=[rollout.pk, action]),
        {
            "csrfmiddlewaretoken": token.group(1),
            "reason": "review",
            "expected_state": rollout.state,
            "expected_step_index": rollout.step_index,
        },
    )


def last_message(response: Any) -> tuple[str, str]:
    message = list(get_messages(response.wsgi_request))[-1]
    return message.level_tag, message.message


def test_the_start_button_refuses_the_author_and_starts_for_another_owner(alice, bob):
    rollout = rollout_create(
        actor=actor_for(alice), prompt_name=NAME, candidate_version=2, plan=PLAN, start=False
    )
    author_page = logged_in(alice).get(live_url(rollout)).content.decode()
    assert "v2 was published by alice, so someone else must start this rollout" in author_page
    assert "pr-approver-note" not in logged_in(bob).get(live_url(rollout)).content.decode()

    refused = click(logged_in(alice), rollout, "start")

    assert refused.status_code == 302
    level, text = last_message(refused)
    assert level == "error"
    assert text.startswith(
        "Could not start: 'support.answer' requires a second approver: v2 was published by alice"
    )
    assert Rollout.objects.get().state == "pending"

    started = click(logged_in(bob), rollout, "start")

    assert last_message(started) == ("success", "Started: v2 serves 10% of users.")
    assert Rollout.objects.get().state == "running"
    assert RolloutTransition.objects.get().actor_name == "bob"


def test_the_promote_button_of_a_manual_step_refuses_the_author_and_works_for_another_owner(alice, bob):
    rollout = rollout_create(actor=actor_for(bob), prompt_name=NAME, candidate_version=2, plan=PLAN)

    refused = click(logged_in(alice), rollout, "promote")

    assert last_message(refused)[0] == "error"
    assert "someone other than alice must approve step 1" in last_message(refused)[1]
    assert Rollout.objects.get().step_index == 0

    promoted = click(logged_in(bob), rollout, "promote")

    assert last_message(promoted)[0] == "success"
    assert Rollout.objects.get().percent == 100


def test_the_start_form_refuses_to_create_a_started_rollout_for_the_author(alice, bob):
    url = reverse("admin:rollouts_rollout_add") + f"?prompt={NAME}"
    data = {"candidate_version": "2", "plan": json.dumps(PLAN), "gates": "[]", "reason": "new tone"}

    form_page = Client()
    form_page.force_login(alice)
    assert "requires a second approver" in form_page.get(url).content.decode()
    refused = form_page.post(url, data | {"start": "yes"})

    assert refused.status_code == 403
    assert "someone other than alice must start its rollout" in refused.content.decode()
    assert not Rollout.objects.exists()

    pending = form_page.post(url, data | {"start": "no"})
    assert pending.status_code == 302
    assert Rollout.objects.get().state == "pending"
