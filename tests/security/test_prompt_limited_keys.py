"""Keys limited to prompts, from the attacker's side: a team's key (``support.*``) asking about,
reporting on or listing another team's prompt (``billing.invoice``) through Django's views."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from access.models import ApiKey
from access.services import apikey_create
from core.actors import Actor
from outcomes.pending import pending_count
from registry.models import Prompt
from rollouts.services import rollout_create
from tests.factories import actor_for, make_prompt
from tests.outcomes.conftest import clear_ingest_keys

pytestmark = pytest.mark.django_db
REFUSED = "prompt_not_allowed"


@pytest.fixture(autouse=True)
def _clean_ingest_state() -> Iterator[None]:
    clear_ingest_keys()
    yield
    clear_ingest_keys()


@pytest.fixture
def prompts(alice: Any, bob: Any) -> dict[str, Any]:
    support = make_prompt(alice, name="support.answer", versions=2)
    billing = make_prompt(bob, name="billing.invoice", versions=2)
    return {
        "support": rollout_create(actor=actor_for(alice), prompt_name="support.answer", candidate_version=2),
        "billing": rollout_create(actor=actor_for(bob), prompt_name="billing.invoice", candidate_version=2),
        "prompts": (support, billing),
    }


def _client(user: Any, scopes: str, prompts: list[str] | None = ["support.*"]) -> APIClient:  # noqa: B006
    _, raw = apikey_create(
        actor=Actor.system(), name="team", user=user, scopes=scopes.split(","), prompts=prompts
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _refused(response: Any) -> bool:
    return response.status_code == 403 and response.json()["error"]["code"] == REFUSED


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/v1/prompts/billing.invoice/render", {"unit": "u1", "variables": {}}),
        ("get", "/api/v1/prompts/billing.invoice", None),
        ("get", "/api/v1/prompts/billing.invoice?label=production", None),
        ("get", "/api/v1/prompts/billing.invoice/versions", None),
        ("get", "/api/v1/prompts/billing.invoice/versions/2", None),
        ("get", "/api/v1/prompts/billing.invoice/versions/2/diff", None),
        ("get", "/api/v1/prompts/billing.invoice/rollouts", None),
        ("get", "/api/v1/prompts/billing.invoice/resolve", None),
    ],
)
def test_a_read_key_limited_to_support_is_refused_billings_prompt(prompts, alice, method, path, body):
    response = getattr(_client(alice, "read"), method)(path, body, format="json")

    assert _refused(response), response.content
    assert "template" not in response.content.decode()


def test_a_write_key_limited_to_support_cannot_move_labels_or_act_on_billings_rollout(prompts, bob):
    # bob owns billing, but this key of his is limited to support.*
    api = _client(bob, "read,write")
    billing = prompts["billing"]

    label = api.put("/api/v1/prompts/billing.invoice/labels/staging", {"version": 1}, format="json")
    pause = api.post(f"/api/v1/rollouts/{billing.pk}/pause", {"reason": "x"}, format="json")
    detail = api.get(f"/api/v1/rollouts/{billing.pk}")
    create = api.post(
        "/api/v1/prompts/billing.invoice/versions", {"template": "t", "model": "m"}, format="json"
    )
    new_prompt = api.post("/api/v1/prompts", {"name": "billing.refunds", "kind": "text"}, format="json")

    assert all(_refused(r) for r in (label, pause, detail, create, new_prompt))
    billing.refresh_from_db()
    assert billing.state == "running"
    assert prompts["prompts"][1].versions.count() == 2
    assert not Prompt.objects.filter(name="billing.refunds").exists()


def test_lists_hold_only_the_keys_prompts(prompts, alice):
    api = _client(alice, "read")

    listed = api.get("/api/v1/prompts").json()
    rollouts = api.get("/api/v1/rollouts").json()
    filtered = api.get("/api/v1/rollouts?prompt=billing.invoice").json()

    assert [p["name"] for p in listed["results"]] == ["support.answer"]
    assert listed["count"] == 1
    assert [r["prompt"] for r in rollouts["results"]] == ["support.answer"]
    assert filtered["count"] == 0


def _event(rollout: Any, arm: str = "candidate") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "prompt": rollout.prompt.name,
        "version": rollout.candidate.version if arm == "candidate" else rollout.baseline.version,
        "rollout_id": rollout.pk,
        "arm": arm,
        "latency_ms": 800.0,
        "error": True,
    }


def test_an_ingest_key_cannot_feed_another_teams_rollout_and_the_batch_is_refused_whole(prompts, alice):
    api = _client(alice, "ingest")
    own = [_event(prompts["support"]), _event(prompts["support"], "baseline")]
    forged = [own[0], _event(prompts["billing"]), own[1], _event(prompts["billing"], "baseline")]

    response = api.post("/api/v1/events", {"events": forged}, format="json")

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == REFUSED
    assert [(d["index"], d["field"]) for d in error["details"]] == [(1, "prompt"), (3, "prompt")]
    assert pending_count() == 0
    # nothing of the batch was remembered: its own events alone are accepted as new
    retry = api.post("/api/v1/events", {"events": own}, format="json")
    assert retry.status_code == 202
    assert retry.json() == {"accepted": 2, "duplicates": 0, "unmatched": 0}


def test_an_exact_name_allows_that_prompt_only(prompts, alice):
    api = _client(alice, "read", ["support.answer"])
    make_prompt(alice, name="support.answer2")

    assert api.get("/api/v1/prompts/support.answer").status_code == 200
    assert _refused(api.get("/api/v1/prompts/support.answer2"))


def test_narrowing_a_key_in_the_admin_or_a_shell_stops_it_at_once(prompts, alice):
    api = _client(alice, "read", None)
    assert api.get("/api/v1/prompts/billing.invoice").status_code == 200

    key = ApiKey.objects.get(name="team")
    key.prompts = ["support.*"]
    key.save()

    assert _refused(api.get("/api/v1/prompts/billing.invoice"))


def test_an_admin_key_limited_to_prompts_reads_only_their_audit_entries(prompts, admin_user):
    api = _client(admin_user, "admin")

    entries = api.get("/api/v1/audit").json()["results"]

    assert entries and {entry["prompt"] for entry in entries} == {"support.answer"}


def test_an_operator_creates_a_limited_key_from_the_command_line(prompts, alice):
    out = io.StringIO()

    call_command("create_api_key", "support-ci", "--user", "alice", "--prompts", "support.*", stdout=out)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().split()[-1]}")
    assert "on support.*" in out.getvalue()
    assert _refused(client.get("/api/v1/prompts/billing.invoice"))
    assert client.get("/api/v1/prompts/support.answer").status_code == 200
