"""An answer that came through a key read from a stale state is marked stale, like one served
from a stale serving state: a revoked key is never answered 200 unmarked after its revocation's
2xx. The keys' rebuild is held up for real: PostgreSQL's table of keys is locked meanwhile."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from access.models import ApiKey
from access.services import apikey_revoke
from core.state_cache import current_generation
from tests.factories import actor_for, make_key, make_prompt
from tests.servers import database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
RESOLVE = "/api/v1/prompts/support.answer/resolve?unit=u1"


def test_a_revoked_key_read_from_a_state_whose_rebuild_is_held_up_is_answered_stale(alice):
    make_prompt(alice, versions=1)
    key = make_key(alice, "read")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get(RESOLVE).json().get("stale") is None  # fresh, and the key is known here

    apikey_revoke(actor=actor_for(alice), key_id=ApiKey.objects.get(user=alice).pk)
    generation = str(current_generation())
    with psycopg.connect(database_url(connection.settings_dict)) as holder:
        holder.execute(f"LOCK TABLE {ApiKey._meta.db_table} IN ACCESS EXCLUSIVE MODE")  # rebuilds wait

        for headers in ({"HTTP_X_PROMPTRAMP_MIN_GENERATION": generation}, {}):
            response = client.get(RESOLVE, **headers)

            if response.status_code == 200:  # from the state before the revocation: said so
                assert response.json()["stale"] is True
                assert response["X-Promptramp-Stale"] == "1"
            else:
                assert response.status_code in (401, 503), response.json()
        holder.rollback()

    wait_for(lambda: client.get(RESOLVE).status_code == 401, seconds=2)  # once the rebuild is done
