"""Required checks through the API: a rollout that waits in pending for CI, the `checks` scope,
`POST /rollouts/{id}/checks`, the tick's evaluation, the webhook event and the admin page."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import close_old_connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from access.services import apikey_create
from audit.models import AuditEntry
from core.actors import Actor
from core.errors import ValidationFailed
from registry.models import Label, Prompt
from rollouts.checks import rollout_check_report, rollout_checks_evaluate_many
from rollouts.errors import RolloutStateError
from rollouts.models import Outbox, Rollout, RolloutTransition
from rollouts.selectors import rollout_ids_waiting_for_checks
from rollouts.services import rollout_create
from rollouts.webhooks import webhook_create
from tests.factories import actor_for, make_key, make_prompt
from tests.serving.clients import fast_get

PLAN = [
    {"percent": 10, "min_duration_s": 0, "min_samples": 10},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.fixture
def writer(alice: Any, client_with_key: Any) -> APIClient:
    return client_with_key(alice, "write")


@pytest.fixture
def ci(alice: Any, client_with_key: Any) -> APIClient:
    return client_with_key(alice, "checks")


def create(client: APIClient, prompt_name: str = "support.answer", **body: Any) -> Any:
    return client.post(
        f"/api/v1/prompts/{prompt_name}/rollouts",
        {"candidate_version": 2, "plan": PLAN, "required_checks": ["offline-eval", "safety"], **body},
        format="json",
    )


def report(client: APIClient, rollout_id: int, name: str, status: str, **extra: Any) -> Any:
    return client.post(
        f"/api/v1/rollouts/{rollout_id}/checks", {"name": name, "status": status, **extra}, format="json"
    )


def reload(rollout_id: int) -> Rollout:
    return Rollout.objects.select_related("prompt", "baseline", "candidate").get(pk=rollout_id)


@pytest.mark.django_db
def test_a_rollout_with_required_checks_waits_pending_serving_production(writer, prompt, alice):
    body = create(writer).json()

    assert (body["state"], body["percent"], body["started_at"]) == ("pending", 0, None)
    assert body["required_checks"] == ["offline-eval", "safety"]
    assert [(c["name"], c["status"], c["reported_at"]) for c in body["checks"]] == [
        ("offline-eval", "pending", None),
        ("safety", "pending", None),
    ]
    assert body["checks_timeout_s"] == 86400
    key = make_key(alice, "read")
    answers = [
        fast_get(f"/api/v1/prompts/support.answer/resolve?unit=u{i}", key=key).json() for i in range(50)
    ]
    assert {(a["arm"], a["version"]) for a in answers} == {("production", 1)}
    moved = writer.put("/api/v1/prompts/support.answer/labels/production", {"version": 2}, format="json")
    assert moved.status_code == 409


@pytest.mark.django_db
def test_start_before_every_check_passed_is_409_checks_pending(writer, ci, prompt):
    rollout_id = create(writer, start=False).json()["id"]
    assert report(ci, rollout_id, "offline-eval", "pass").status_code == 200

    started = writer.post(f"/api/v1/rollouts/{rollout_id}/start", {}, format="json")

    assert started.status_code == 409
    error = started.json()["error"]
    assert error["code"] == "checks_pending"
    assert error["details"]["checks"] == [{"name": "safety", "status": "pending"}]
    assert reload(rollout_id).state == "pending"


@pytest.mark.django_db
def test_once_every_check_passed_a_rollout_created_without_start_may_be_started(writer, ci, prompt):
    rollout_id = create(writer, start=False).json()["id"]
    report(ci, rollout_id, "offline-eval", "pass")
    report(ci, rollout_id, "safety", "pass", detail="0 of 200 unsafe", url="https://ci.example.com/runs/1")

    outcomes = rollout_checks_evaluate_many(rollout_ids=[rollout_id])

    assert outcomes[rollout_id].outcome == "passed"
    assert reload(rollout_id).state == "pending", "created with start: false, it waits for a person"
    assert "it may be started" in reload(rollout_id).reason
    started = writer.post(f"/api/v1/rollouts/{rollout_id}/start", {}, format="json")
    assert (started.status_code, started.json()["state"], started.json()["percent"]) == (200, "running", 10)


@pytest.mark.django_db
def test_the_tick_starts_a_rollout_created_with_start_as_its_creator(writer, ci, prompt):
    rollout_id = create(writer).json()["id"]
    report(ci, rollout_id, "offline-eval", "pass")
    rollout_checks_evaluate_many(rollout_ids=[rollout_id])
    assert reload(rollout_id).state == "pending", "one check is still pending"
    report(ci, rollout_id, "safety", "pass")

    rollout_checks_evaluate_many(rollout_ids=[rollout_id])

    rollout = reload(rollout_id)
    assert (rollout.state, rollout.percent) == ("running", 10)
    started = RolloutTransition.objects.get(rollout_id=rollout_id, event="started")
    assert started.actor_name == "alice"
    assert started.reason == "every required check passed: offline-eval, safety"


@pytest.mark.django_db
def test_a_failing_check_aborts_the_rollout_naming_the_check_and_its_detail(writer, ci, prompt):
    rollout_id = create(writer).json()["id"]

    answer = report(
        ci, rollout_id, "safety", "fail", detail="12 of 200 answers unsafe", url="http://ci.local/7"
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["state"] == "aborted"
    assert body["reason"] == "required check 'safety' failed: 12 of 200 answers unsafe"
    (safety,) = [c for c in body["checks"] if c["name"] == "safety"]
    assert (safety["status"], safety["detail"], safety["url"]) == (
        "fail",
        "12 of 200 answers unsafe",
        "http://ci.local/7",
    )
    assert safety["reported_by"] == "alice" and safety["reported_at"]
    assert Label.objects.get(prompt__name="support.answer", name="production").version.version == 1
    again = report(ci, rollout_id, "offline-eval", "pass")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_state"
    entry = AuditEntry.objects.get(action="rollout.check_reported")
    assert (entry.data["check"], entry.data["status"], entry.reason) == (
        "safety",
        "fail",
        "12 of 200 answers unsafe",
    )
    assert AuditEntry.objects.filter(action="rollout.aborted", object_id=str(rollout_id)).exists()


@pytest.mark.django_db
def test_checks_not_all_passed_by_the_timeout_abort_the_rollout(writer, ci, prompt):
    rollout_id = create(writer, checks_timeout_s=600).json()["id"]
    report(ci, rollout_id, "offline-eval", "pass")
    created = reload(rollout_id).created_at

    rollout_checks_evaluate_many(rollout_ids=[rollout_id], now=created + timedelta(seconds=599))
    assert reload(rollout_id).state == "pending"
    rollout_checks_evaluate_many(rollout_ids=[rollout_id], now=created + timedelta(seconds=600))

    rollout = reload(rollout_id)
    assert rollout.state == "aborted"
    assert rollout.reason == "required checks not all passed within 10 min: still pending: safety"
    assert RolloutTransition.objects.get(rollout=rollout, event="aborted").actor_name == "system"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"required_checks": ["Offline Eval"]}, "required_checks"),
        ({"required_checks": ["a", "a"]}, "required_checks"),
        ({"required_checks": [f"c{i}" for i in range(21)]}, "required_checks"),
        ({"required_checks": ["a" * 65]}, "required_checks"),
        ({"required_checks": "offline-eval"}, "required_checks"),
        ({"checks_timeout_s": 0}, "checks_timeout_s"),
        ({"checks_timeout_s": 31 * 86400}, "checks_timeout_s"),
    ],
)
def test_invalid_required_checks_are_a_400_and_create_nothing(writer, prompt, body, field):
    answer = create(writer, **body)

    assert answer.status_code == 400
    assert field in json.dumps(answer.json()["error"])
    assert not Rollout.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "unknown", "status": "pass"}, "validation_error"),
        ({"name": "safety", "status": "passed"}, "validation_error"),
        ({"name": "safety", "status": "pass", "url": "javascript:alert(1)"}, "validation_error"),
        ({"name": "safety", "status": "pass", "url": "ftp://ci.example.com/x"}, "validation_error"),
        ({"name": "safety", "status": "pass", "url": "https://" + "a" * 2000}, "validation_error"),
        ({"name": "safety", "status": "pass", "detail": "x" * 2001}, "validation_error"),
        ({"name": "safety", "status": "pass", "detail": "nul \x00 byte"}, "validation_error"),
        ({"status": "pass"}, "validation_error"),
    ],
)
def test_bad_reports_are_a_400_and_change_nothing(writer, ci, prompt, body, code):
    rollout_id = create(writer).json()["id"]

    answer = ci.post(f"/api/v1/rollouts/{rollout_id}/checks", body, format="json")

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert {c.status for c in reload(rollout_id).checks.all()} == {"pending"}
    assert not AuditEntry.objects.filter(action="rollout.check_reported").exists()


@pytest.mark.django_db
def test_who_may_report_a_check(writer, prompt, alice, bob, client_with_key):
    rollout_id = create(writer).json()["id"]
    make_prompt(alice, name="other", versions=1)
    _, limited_elsewhere = apikey_create(
        actor=Actor.system(), name="ci-other", user=bob, scopes=["checks"], prompts=["other"]
    )
    _, limited_here = apikey_create(
        actor=Actor.system(), name="ci-support", user=bob, scopes=["checks"], prompts=["support.*"]
    )

    def status_with(client: APIClient) -> int:
        return report(client, rollout_id, "offline-eval", "pass").status_code

    def key_client(raw: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    assert status_with(client_with_key(alice, "read")) == 403
    assert status_with(client_with_key(alice, "ingest")) == 403
    assert status_with(client_with_key(bob, "write")) == 403, "write on a prompt bob does not own"
    assert status_with(key_client(limited_elsewhere)) == 403
    assert report(key_client(limited_elsewhere), 10**9, "offline-eval", "pass").status_code == 404
    assert status_with(APIClient()) == 401
    assert status_with(key_client(limited_here)) == 200, "a checks key need not own the prompt"
    assert status_with(writer) == 200, "write on an owned prompt"
    rollout = reload(rollout_id)
    assert [c.reported_by for c in rollout.checks.all()] == ["alice", ""]


@pytest.mark.django_db
def test_a_checks_key_may_do_nothing_else(alice, prompt, client_with_key):
    ci = client_with_key(alice, "checks")

    assert ci.get("/api/v1/prompts/support.answer").status_code == 403
    assert (
        ci.post(
            "/api/v1/prompts/support.answer/rollouts", {"candidate_version": 2}, format="json"
        ).status_code
        == 403
    )
    assert (
        fast_get("/api/v1/prompts/support.answer/resolve?unit=u", key=make_key(alice, "checks")).status_code
        == 403
    )


@pytest.mark.django_db
def test_create_api_key_command_and_api_accept_the_checks_scope(admin_user, client_with_key):
    admin = client_with_key(admin_user, "admin")
    created = admin.post("/api/v1/keys", {"name": "ci", "scopes": ["checks", "read"]}, format="json")
    assert created.status_code == 201, created.json()
    assert sorted(created.json()["scopes"]) == ["checks", "read"]
    output = StringIO()
    call_command("create_api_key", "ci2", "--user", "root", "--scopes", "checks", stdout=output)
    assert "with checks" in output.getvalue()


@pytest.mark.django_db
def test_creation_sends_the_checks_requested_webhook_event(writer, prompt, admin_user, settings):
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    webhook_create(actor=actor_for(admin_user), url="http://127.0.0.1:9/hook", secret="s3cret-for-tests")
    only_transitions = webhook_create(
        actor=actor_for(admin_user),
        url="http://127.0.0.1:9/other",
        secret="s3cret-for-tests",
        events=["rollout.started"],
    )

    rollout_id = create(writer).json()["id"]

    (message,) = Outbox.objects.filter(event="rollout.checks_requested")
    assert message.webhook_id != only_transitions.pk
    body = json.loads(message.body)
    assert body["required_checks"] == ["offline-eval", "safety"]
    assert body["report_path"] == f"/api/v1/rollouts/{rollout_id}/checks"
    assert body["rollout"]["id"] == rollout_id and body["rollout"]["candidate_version"] == 2
    assert "waits for required checks: offline-eval, safety" in body["text"]
    subscribed = webhook_create(
        actor=actor_for(admin_user),
        url="http://127.0.0.1:9/ci",
        secret="s3cret-for-tests",
        events=["rollout.checks_requested"],
    )
    assert subscribed.events == ["rollout.checks_requested"]


@pytest.mark.django_db
def test_a_rollout_without_checks_sends_no_checks_requested_event(writer, prompt, admin_user, settings):
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    webhook_create(actor=actor_for(admin_user), url="http://127.0.0.1:9/hook", secret="s3cret-for-tests")

    body = create(writer, required_checks=None).json()

    assert body["state"] == "running" and body["checks"] == []
    assert not Outbox.objects.filter(event="rollout.checks_requested").exists()


@pytest.mark.django_db
def test_the_admin_page_shows_each_check_with_its_link(writer, ci, prompt, admin_user):
    rollout_id = create(writer).json()["id"]
    report(
        ci,
        rollout_id,
        "offline-eval",
        "pass",
        detail="helpfulness 0.84",
        url="https://ci.example.com/runs/42",
    )
    browser = Client()
    browser.force_login(admin_user)

    page = browser.get(reverse("admin:rollouts_rollout_change", args=[rollout_id]))

    html = page.content.decode()
    assert page.status_code == 200
    assert "Required checks" in html
    assert 'href="https://ci.example.com/runs/42"' in html
    assert "helpfulness 0.84" in html
    assert 'pr-verdict-pending">pending' in html and 'pr-verdict-pass">pass' in html
    assert "until every required check has passed (1 of 2 so far); then it starts itself" in html


@pytest.mark.django_db
def test_the_admin_start_button_refuses_while_checks_are_pending(writer, prompt, admin_user):
    rollout_id = create(writer, start=False).json()["id"]
    browser = Client()
    browser.force_login(admin_user)

    answer = browser.post(
        reverse("admin:rollouts_rollout_action", args=[rollout_id, "start"]), {"reason": "go"}, follow=True
    )

    assert (
        "every required check has passed; not yet: offline-eval (pending), safety (pending)"
        in answer.content.decode()
    )
    assert reload(rollout_id).state == "pending"


@pytest.mark.django_db(transaction=True)
def test_the_last_pass_and_a_tick_racing_start_the_rollout_once(alice, prompt):
    rollout = rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=PLAN,
        required_checks=["a", "b"],
    )
    rollout_check_report(
        actor=actor_for(alice), rollout_id=rollout.pk, name="a", status="pass", as_owner=True
    )
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run(work: Any) -> None:
        barrier.wait()
        try:
            work()
        except RolloutStateError:
            pass
        except BaseException as error:  # noqa: BLE001 (handed to the test's thread)
            errors.append(error)
        finally:
            close_old_connections()

    def last_pass() -> None:
        rollout_check_report(
            actor=actor_for(alice), rollout_id=rollout.pk, name="b", status="pass", as_owner=True
        )

    def tick() -> None:
        for _ in range(20):
            rollout_checks_evaluate_many(rollout_ids=[rollout.pk], now=timezone.now())

    threads = [threading.Thread(target=run, args=(work,)) for work in (last_pass, tick, tick, tick)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rollout_checks_evaluate_many(rollout_ids=[rollout.pk])

    assert errors == []
    assert reload(rollout.pk).state == "running"
    assert RolloutTransition.objects.filter(rollout=rollout, event="started").count() == 1


@pytest.mark.django_db
def test_the_tick_leaves_alone_rollouts_it_has_nothing_to_do_for(writer, ci, prompt, alice):
    make_prompt(alice, name="support.other", versions=2)
    waiting = create(writer).json()["id"]
    passed_by_hand = create(writer, "support.other", start=False, required_checks=["one"]).json()["id"]
    Rollout.objects.filter(pk=waiting).update(state="aborted")
    waiting = create(writer).json()["id"]
    report(ci, passed_by_hand, "one", "pass")

    assert rollout_ids_waiting_for_checks(limit=100) == [waiting]
    report(ci, waiting, "offline-eval", "pass")
    report(ci, waiting, "safety", "pass")
    assert rollout_ids_waiting_for_checks(limit=100) == [waiting], "due to start"
    rollout_checks_evaluate_many(rollout_ids=[waiting])
    assert rollout_ids_waiting_for_checks(limit=100) == []


@pytest.mark.django_db
@pytest.mark.parametrize("name", [None, "", "a" * 65, "nul\x00", 7])
def test_the_report_service_refuses_names_that_cannot_be_a_check(writer, prompt, alice, name):
    rollout_id = create(writer).json()["id"]

    with pytest.raises(ValidationFailed):
        rollout_check_report(
            actor=actor_for(alice), rollout_id=rollout_id, name=name, status="pass", as_owner=True
        )


@pytest.mark.django_db
def test_the_automatic_start_asks_the_second_approver_as_the_creator(
    writer, ci, prompt, bob, client_with_key
):
    rollout_id = create(writer).json()["id"]
    prompt.owner_users.add(bob)
    Prompt.objects.filter(pk=prompt.pk).update(require_second_approver=True)
    report(ci, rollout_id, "offline-eval", "pass")
    report(ci, rollout_id, "safety", "pass")

    rollout_checks_evaluate_many(rollout_ids=[rollout_id])

    rollout = reload(rollout_id)
    assert rollout.state == "pending", "alice wrote v2 and created the rollout: her start is refused"
    assert "the automatic start was refused" in rollout.reason and "second approver" in rollout.reason
    assert rollout_ids_waiting_for_checks(limit=10) == []
    started = client_with_key(bob, "write").post(f"/api/v1/rollouts/{rollout_id}/start", {}, format="json")
    assert (started.status_code, started.json()["state"]) == (200, "running")
