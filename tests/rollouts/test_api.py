"""The rollouts REST API: create, list, act; errors in the JSON error shape."""

from __future__ import annotations

from typing import Any

import pytest

from rollouts.models import Rollout
from tests.factories import make_prompt

PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 50, "min_duration_s": 600, "min_samples": 200, "approval": "manual"},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
GATES = [
    {
        "metric": "error_rate",
        "source": "ingest",
        "max_increase_abs": 0.01,
        "min_samples": 200,
        "on_fail": "rollback",
    }
]
FIELDS = {
    "id",
    "prompt",
    "baseline_version",
    "candidate_version",
    "state",
    "step_index",
    "percent",
    "plan",
    "gates",
    "salt",
    "created_at",
    "started_at",
    "ended_at",
    "reason",
}


@pytest.fixture
def writer(alice: Any, client_with_key: Any) -> Any:
    return client_with_key(alice, "write")


def post_rollout(client: Any, body: dict[str, Any], name: str = "support.answer") -> Any:
    return client.post(f"/api/v1/prompts/{name}/rollouts", body, format="json")


@pytest.mark.django_db
def test_create_answers_201_with_the_rollout(writer, prompt):
    response = post_rollout(writer, {"candidate_version": 2, "plan": PLAN, "gates": GATES, "salt": "s1"})
    assert response.status_code == 201
    body = response.json()
    assert FIELDS <= set(body)
    assert body["prompt"] == "support.answer"
    assert (body["baseline_version"], body["candidate_version"]) == (1, 2)
    assert (body["state"], body["step_index"], body["percent"]) == ("running", 0, 10)
    assert body["plan"][1] == {**PLAN[1], "max_duration_s": 86400}
    assert body["gates"] == GATES
    assert body["salt"] == "s1"
    assert body["started_at"] and body["ended_at"] is None


@pytest.mark.django_db
def test_the_traffic_check_is_configured_at_create_and_shown(writer, prompt, alice, client_with_key):
    default = post_rollout(writer, {"candidate_version": 2}).json()
    writer.post(f"/api/v1/rollouts/{default['id']}/abort", {}, format="json")
    chosen = post_rollout(writer, {"candidate_version": 2, "traffic": {"on_fail": "rollback"}}).json()

    assert default["traffic"] == {"on_fail": "pause"}
    assert chosen["traffic"] == {"on_fail": "rollback"}
    shown = client_with_key(alice, "read").get(f"/api/v1/rollouts/{chosen['id']}").json()
    assert shown["traffic"] == {"on_fail": "rollback"}
    refused = post_rollout(writer, {"candidate_version": 2, "traffic": {"on_fail": "ignore"}}).json()
    assert refused["error"]["details"] == {"field": "traffic.on_fail"}


@pytest.mark.django_db
def test_create_with_start_false_is_pending(writer, prompt):
    body = post_rollout(writer, {"candidate_version": 2, "start": False}).json()
    assert (body["state"], body["percent"], body["started_at"]) == ("pending", 0, None)
    started = writer.post(f"/api/v1/rollouts/{body['id']}/start", {"reason": "go"}, format="json")
    assert started.status_code == 200
    assert started.json()["state"] == "running"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"candidate_version": 2, "plan": [{"percent": 50, "min_duration_s": 0, "min_samples": 0}]},
            400,
            "validation_error",
        ),
        ({"candidate_version": 2, "gates": [{"metric": "vibes", "max": 1}]}, 400, "validation_error"),
        ({"candidate_version": 1}, 400, "validation_error"),
        ({"candidate_version": 9}, 400, "validation_error"),
        ({"candidate_version": "two"}, 400, "validation_error"),
        ({"candidate_version": 2, "salt": "x" * 201}, 400, "validation_error"),
        ({"candidate_version": 2, "traffic": {"on_fail": "ignore"}}, 400, "validation_error"),
        ({"candidate_version": 2, "traffic": {"on_fail": "pause", "share": 5}}, 400, "validation_error"),
        ({"candidate_version": 2, "traffic": "pause"}, 400, "validation_error"),
        ({}, 400, "validation_error"),
    ],
)
def test_invalid_creates_are_refused_and_store_nothing(writer, prompt, body, status, code):
    response = post_rollout(writer, body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_a_body_that_is_not_an_object_is_a_400(writer, prompt):
    response = writer.post("/api/v1/prompts/support.answer/rollouts", [1, 2], format="json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_prompt_without_production_is_a_409_and_unknown_prompt_a_404(writer, alice):
    make_prompt(alice, name="empty", versions=0)
    refused = post_rollout(writer, {"candidate_version": 1}, name="empty")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "no_production")
    assert post_rollout(writer, {"candidate_version": 1}, name="nope").status_code == 404


@pytest.mark.django_db
def test_second_active_rollout_is_a_409(writer, alice):
    make_prompt(alice, versions=3)
    assert post_rollout(writer, {"candidate_version": 2}).status_code == 201
    second = post_rollout(writer, {"candidate_version": 3})
    assert (second.status_code, second.json()["error"]["code"]) == (409, "rollout_active")


@pytest.mark.django_db
def test_create_needs_write_scope_and_ownership(alice, bob, client_with_key, prompt):
    reader, other = client_with_key(alice, "read"), client_with_key(bob, "write")
    assert post_rollout(reader, {"candidate_version": 2}).status_code == 403
    assert post_rollout(other, {"candidate_version": 2}).status_code == 403
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_lists_filter_by_state_and_prompt(alice, client_with_key):
    writer, reader = client_with_key(alice, "write"), client_with_key(alice, "read")
    make_prompt(alice, name="a", versions=2)
    make_prompt(alice, name="b", versions=2)
    post_rollout(writer, {"candidate_version": 2}, name="a")
    post_rollout(writer, {"candidate_version": 2, "start": False}, name="b")
    running = reader.get("/api/v1/rollouts?state=running").json()
    assert running["count"] == 1 and running["results"][0]["prompt"] == "a"
    assert reader.get("/api/v1/rollouts?prompt=b").json()["results"][0]["state"] == "pending"
    assert reader.get("/api/v1/rollouts").json()["count"] == 2
    assert reader.get("/api/v1/prompts/b/rollouts").json()["count"] == 1
    assert reader.get("/api/v1/rollouts?state=exploded").status_code == 400
    assert reader.get("/api/v1/prompts/nope/rollouts").status_code == 404


@pytest.mark.django_db
def test_actions_follow_the_state_machine(writer, prompt):
    rollout_id = post_rollout(writer, {"candidate_version": 2, "plan": PLAN}).json()["id"]

    def act(action: str) -> Any:
        return writer.post(
            f"/api/v1/rollouts/{rollout_id}/{action}", {"reason": f"{action} now"}, format="json"
        )

    assert act("pause").json()["state"] == "paused"
    conflict = act("pause")
    assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "invalid_state")
    assert act("resume").json()["state"] == "running"
    ended = act("abort").json()
    assert (ended["state"], ended["reason"], ended["percent"]) == ("aborted", "abort now", 0)
    assert act("resume").status_code == 409
    assert writer.post("/api/v1/rollouts/999999/pause", {}, format="json").status_code == 404


@pytest.mark.django_db
def test_actions_take_an_optional_reason_and_need_write(alice, client_with_key, prompt):
    writer, reader = client_with_key(alice, "write"), client_with_key(alice, "read")
    rollout_id = post_rollout(writer, {"candidate_version": 2}).json()["id"]
    assert reader.post(f"/api/v1/rollouts/{rollout_id}/pause", {}, format="json").status_code == 403
    paused = writer.post(f"/api/v1/rollouts/{rollout_id}/pause", content_type="application/json")
    assert paused.status_code == 200 and paused.json()["reason"] == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"candidate_version": 2**40},
        {"candidate_version": 2, "gates": [{"metric": "score:a\u0000b", "max_drop_abs": 0.1}]},
        {"candidate_version": 2, "salt": "a\u0000b"},
        {"candidate_version": 2, "plan": [1, 2]},
        {"candidate_version": 2, "plan": [{"percent": 100, "min_duration_s": -1, "min_samples": 0}]},
        {"candidate_version": 2, "start": "maybe"},
    ],
)
def test_hostile_creates_are_400s_not_server_errors(writer, prompt, body):
    response = post_rollout(writer, body)
    assert response.status_code == 400
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_ids_beyond_any_row_are_404s(writer, alice, admin_user, client_with_key):
    admin = client_with_key(admin_user, "admin")
    assert writer.get("/api/v1/rollouts/99999999999999999999999").status_code == 404
    assert writer.post("/api/v1/rollouts/99999999999999999999999/pause", {}, format="json").status_code == 404
    assert writer.get("/api/v1/rollouts/999999999999999999").status_code == 404
    assert admin.delete("/api/v1/webhooks/99999999999999999999999").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["prompt=a%00b", "state=%00", "prompt=" + "a" * 501])
def test_list_filters_with_nul_or_overlong_text_are_400s(alice, client_with_key, query):
    response = client_with_key(alice, "read").get(f"/api/v1/rollouts?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.django_db
def test_rollout_and_webhook_lists_are_paginated_in_the_schema(client):
    paths = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]

    for path in ("/api/v1/rollouts", "/api/v1/prompts/{name}/rollouts", "/api/v1/webhooks"):
        get = paths[path]["get"]
        assert get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].startswith(
            "#/components/schemas/Paginated"
        ), path
        assert "page" in {parameter["name"] for parameter in get["parameters"]}, path
        assert {"401", "403", "404"} <= set(get["responses"]), path


SHADOW_PLAN = [
    {"shadow": True, "percent": 20, "min_duration_s": 60, "min_samples": 100},
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


@pytest.mark.django_db
def test_a_rollout_in_its_shadow_step_exposes_nobody_and_shows_the_shadow(writer, prompt):
    created = post_rollout(writer, {"candidate_version": 2, "plan": SHADOW_PLAN}).json()

    body = writer.get(f"/api/v1/rollouts/{created['id']}").json()

    assert (body["state"], body["step_index"], body["percent"], body["shadow_percent"]) == (
        "running",
        0,
        0,
        20,
    )
    assert body["current_step"]["shadow"] is True
    assert {"baseline", "candidate", "shadow", "shadow_baseline"} <= set(body["arms"])
    (started,) = body["history"]
    assert (started["event"], started["percent"], started["shadow_percent"]) == ("started", 0, 20)


@pytest.mark.django_db
def test_a_shadow_step_after_an_exposed_one_is_a_400_naming_it(writer, prompt):
    plan = [SHADOW_PLAN[1], SHADOW_PLAN[0], SHADOW_PLAN[2]]

    response = post_rollout(writer, {"candidate_version": 2, "plan": plan})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "plan[1].shadow" in error["message"] and "before the first exposed step" in error["message"]
    assert not Rollout.objects.exists()


@pytest.mark.django_db
def test_a_rollout_without_a_shadow_step_shows_no_shadow_arms(writer, prompt):
    created = post_rollout(writer, {"candidate_version": 2, "plan": PLAN}).json()

    body = writer.get(f"/api/v1/rollouts/{created['id']}").json()

    assert set(body["arms"]) == {"baseline", "candidate"} and body["shadow_percent"] is None
