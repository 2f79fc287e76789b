"""The actions on a rollout's live page: POST forms with CSRF protection that call the rollout
services with the logged-in user (via "admin") and a reason, and show the outcome as a message."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from registry.models import Label
from rollouts.models import Rollout
from rollouts.services import rollout_create
from tests.factories import actor_for, make_prompt
from tests.rollouts.outcomes import OBSERVE_TRAFFIC, ingest_client, report

pytestmark = pytest.mark.django_db

PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


def logged_in(user, *, csrf: bool = False) -> Client:  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def start(owner, **kwargs) -> Rollout:  # type: ignore[no-untyped-def]
    args = {"prompt_name": "support.answer", "candidate_version": 2, "plan": PLAN, "traffic": OBSERVE_TRAFFIC}
    return rollout_create(actor=actor_for(owner), **(args | kwargs))


def act(client: Client, rollout: Rollout, action: str, reason: str = ""):  # type: ignore[no-untyped-def]
    return client.post(
        reverse("admin:rollouts_rollout_action", args=[rollout.pk, action]), {"reason": reason}
    )


def messages_of(response) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def state_of(rollout: Rollout) -> tuple[str, float]:
    rollout.refresh_from_db()
    return rollout.state, float(rollout.percent)


@pytest.mark.parametrize(
    ("action", "before", "after", "message"),
    [
        ("start", "pending", ("running", 10), "Started: v2 serves 10% of users."),
        ("pause", "running", ("paused", 10), "Paused at 10%: the split stays"),
        ("resume", "paused", ("running", 10), "Resumed at 10%: this step's clock and statistics start over."),
        ("promote", "running", ("running", 100), "Promoted to step 2 of 2: v2 serves 100% of users."),
        ("rollback", "running", ("rolled_back", 0), "Rolled back: every user is on v1 again."),
        ("abort", "pending", ("aborted", 0), "Aborted: every user is on v1."),
    ],
)
def test_each_action_goes_through_its_service_and_is_audited_as_the_admin_user(
    alice, action, before, after, message
):
    make_prompt(alice, versions=2)
    rollout = start(alice, start=before != "pending")
    client = logged_in(alice)
    if before == "paused":
        act(client, rollout, "pause")

    response = act(client, rollout, action, reason="because")

    assert response.status_code == 302
    assert response.url == reverse("admin:rollouts_rollout_change", args=[rollout.pk])
    assert state_of(rollout) == after
    assert messages_of(response)[-1][0] == "success" and messages_of(response)[-1][1].startswith(message)
    entry = AuditEntry.objects.filter(object_type="rollout").latest("id")
    assert (entry.actor_name, entry.via) == ("alice", "admin")
    assert entry.reason.startswith("because")


def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    client = logged_in(alice, csrf=True)

    response = act(client, rollout, "rollback", reason="no token")

    assert response.status_code == 403
    assert state_of(rollout) == ("running", 10)
    assert not AuditEntry.objects.filter(action="rollout.rolled_back").exists()


def test_the_csrf_token_of_the_page_lets_the_action_through(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    client = logged_in(alice, csrf=True)
    client.get(reverse("admin:rollouts_rollout_change", args=[rollout.pk]))

    response = client.post(
        reverse("admin:rollouts_rollout_action", args=[rollout.pk, "pause"]),
        {"reason": "with token", "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )

    assert response.status_code == 302
    assert state_of(rollout) == ("paused", 10)


def test_an_action_is_never_a_get(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)

    response = logged_in(alice).get(reverse("admin:rollouts_rollout_action", args=[rollout.pk, "rollback"]))

    assert response.status_code == 405
    assert state_of(rollout) == ("running", 10)


def test_an_action_the_state_does_not_allow_shows_the_409_message(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice, start=False)

    response = act(logged_in(alice), rollout, "pause", reason="too early")

    assert state_of(rollout) == ("pending", 0)
    assert messages_of(response) == [("error", "Could not pause: A pending rollout cannot pause.")]


def test_promoting_past_a_failing_gate_shows_the_gate_and_changes_nothing(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice, gates=[{"metric": "error_rate", "max_increase_abs": 0.01}])
    events = ingest_client(alice)
    report(events, rollout, "baseline", 1500, errors=15)
    report(events, rollout, "candidate", 1500, errors=300)

    response = act(logged_in(alice), rollout, "promote", reason="ship it")

    ((level, text),) = messages_of(response)
    assert level == "error" and text.startswith(
        "Could not promote: Cannot promote past a failing gate (error_rate)"
    )
    assert state_of(rollout) == ("running", 10)
    assert Label.objects.get(name="production").version.version == 1


def test_someone_who_does_not_own_the_prompt_cannot_act(alice, bob):
    make_prompt(alice, versions=2)
    rollout = start(alice)

    response = act(logged_in(bob), rollout, "rollback", reason="mine now")

    assert state_of(rollout) == ("running", 10)
    assert messages_of(response) == [
        ("error", "Could not roll back: Only the owners of 'support.answer' or an admin may change it.")
    ]


def test_an_unknown_action_is_a_404_and_a_reason_too_long_is_refused(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    client = logged_in(alice)

    unknown = act(client, rollout, "explode")
    too_long = act(client, rollout, "pause", reason="x" * 10_001)

    assert unknown.status_code == 404
    assert messages_of(too_long) == [
        ("error", "The reason is refused: Ensure this value has at most 10000 characters (it has 10001).")
    ]
    assert state_of(rollout) == ("running", 10)


def test_a_reason_holding_a_nul_character_is_refused_with_its_error_and_changes_nothing(alice):
    make_prompt(alice, versions=2)
    rollout = start(alice)
    audited = AuditEntry.objects.count()

    response = act(logged_in(alice), rollout, "rollback", reason="bad\x00input")

    assert response.status_code == 302
    assert messages_of(response) == [("error", "The reason is refused: Null characters are not allowed.")]
    assert state_of(rollout) == ("running", 10)
    assert AuditEntry.objects.count() == audited


def test_a_superuser_acts_on_any_prompt(alice, admin_user):
    make_prompt(alice, versions=2)
    rollout = start(alice)

    act(logged_in(admin_user), rollout, "abort", reason="incident")

    assert state_of(rollout) == ("aborted", 0)
    entry = AuditEntry.objects.get(action="rollout.aborted")
    assert (entry.actor_name, entry.via, entry.reason) == ("root", "admin", "incident")
