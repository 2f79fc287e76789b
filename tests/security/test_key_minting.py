"""Owners mint limited keys, from the attacker's side: a user with a ``write`` key asks
``POST /api/v1/keys`` for a key reaching beyond the prompts they own."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from access.models import ApiKey
from access.services import apikey_create
from audit.models import AuditEntry
from core.actors import Actor
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db
KEYS = "/api/v1/keys"


@pytest.fixture
def teams(alice: Any, bob: Any) -> None:
    make_prompt(alice, name="support.answer")
    make_prompt(alice, name="support.greeting")
    make_prompt(bob, name="billing.invoice")


def _bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_an_owner_mints_an_ingest_key_limited_to_the_prompts_they_own(teams, alice, client_with_key):
    api = client_with_key(alice, "write")

    response = api.post(KEYS, {"name": "support-ingest", "scopes": ["ingest"], "prompts": ["support.*"]})

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["user"] == "alice"
    assert created["prompts"] == ["support.answer", "support.greeting"]
    entry = AuditEntry.objects.get(action="apikey.create", object_id=str(created["id"]))
    assert entry.actor_name == "alice"
    assert entry.data["prompts"] == ["support.answer", "support.greeting"]


def test_a_prefix_never_reaches_a_prompt_another_team_creates_later(teams, alice, bob, client_with_key):
    raw = client_with_key(alice, "write").post(
        KEYS, {"name": "k", "scopes": ["read"], "prompts": ["support.*"]}
    )
    key = _bearer(raw.json()["key"])

    make_prompt(bob, name="support.refunds")  # bob's, created after the key

    refused = key.get("/api/v1/prompts/support.refunds")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "prompt_not_allowed"
    assert key.get("/api/v1/prompts/support.answer").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "k", "scopes": ["read"], "prompts": ["billing.*"]}, 403, "prompt_not_allowed"),
        ({"name": "k", "scopes": ["read"], "prompts": ["billing.invoice"]}, 403, "prompt_not_allowed"),
        ({"name": "k", "scopes": ["read"], "prompts": ["*"]}, 400, "validation_error"),
        ({"name": "k", "scopes": ["read"], "prompts": ["support.*", "billing.*"]}, 403, "prompt_not_allowed"),
        ({"name": "k", "scopes": ["read"], "prompts": ["nothing.here"]}, 403, "prompt_not_allowed"),
        ({"name": "k", "scopes": ["read"], "prompts": ["nothing.*"]}, 400, "validation_error"),
        ({"name": "k", "scopes": ["read"]}, 400, "validation_error"),
        ({"name": "k", "scopes": ["write"], "prompts": ["support.*"]}, 403, "forbidden"),
        ({"name": "k", "scopes": ["admin"], "prompts": ["support.*"]}, 403, "forbidden"),
        ({"name": "k", "scopes": ["read"], "prompts": ["support.*"], "user": "bob"}, 403, "forbidden"),
    ],
)
def test_a_key_reaching_beyond_ones_own_prompts_is_refused_and_nothing_is_created(
    teams, alice, client_with_key, body, status, code
):
    api = client_with_key(alice, "write")
    before = ApiKey.objects.count()

    response = api.post(KEYS, body)

    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert ApiKey.objects.count() == before


def test_a_key_limited_to_prompts_cannot_mint_one_reaching_further(teams, alice):
    _, raw = apikey_create(
        actor=Actor.system(), name="w", user=alice, scopes=["write"], prompts=["support.answer"]
    )

    response = _bearer(raw).post(KEYS, {"name": "k", "scopes": ["read"], "prompts": ["support.*"]})

    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"prompts": ["support.greeting"]}


def test_an_admin_key_still_creates_any_key(teams, admin_user, bob, client_with_key):
    api = client_with_key(admin_user, "admin")

    response = api.post(KEYS, {"name": "k", "scopes": ["write"], "user": "bob", "prompts": ["support.*"]})

    assert response.status_code == 201
    assert response.json()["prompts"] == ["support.*"]
