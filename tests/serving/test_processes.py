"""Two web processes share PostgreSQL and Redis: a change made anywhere is served by every
process within a second."""

import json
import urllib.request

import pytest
from django.db import connection

from tests.factories import make_key, make_prompt
from tests.servers import base_env, database_url, http_get, wait_for, web_server
from tests.serving.helpers import put_rollout, set_rollout

RESOLVE = "/api/v1/prompts/support.answer/resolve?unit=user-1"


def _everywhere(servers, key, field, value) -> bool:
    """Ten answers from each server (two worker processes each) all carry ``field: value``."""
    return all(http_get(s + RESOLVE, key=key).body[field] == value for s in servers for _ in range(10))


def _put(url: str, key: str, body: dict) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


@pytest.mark.django_db(transaction=True)
def test_a_label_moved_through_one_process_and_a_rollout_step_reach_both_within_a_second(alice, tmp_path):
    make_prompt(alice, versions=2)
    key, writer = make_key(alice, "read"), make_key(alice, "write")
    env = base_env(DATABASE_URL=database_url(connection.settings_dict))

    with web_server(env, tmp_path / "a.log") as first, web_server(env, tmp_path / "b.log") as second:
        servers = (first, second)
        assert _everywhere(servers, key, "version", 1)

        moved = _put(first + "/api/v1/prompts/support.answer/labels/production", writer, {"version": 2})
        assert moved == 200
        # Every worker of both servers, not only the one that took the write, within the second.
        wait_for(lambda: _everywhere(servers, key, "version", 2), seconds=1.0)

        rollout = put_rollout(alice.owned_prompts.get(), baseline=2, candidate=1, percent="0")
        wait_for(lambda: _everywhere(servers, key, "arm", "baseline"), seconds=1.0)
        set_rollout(rollout, percent=100)
        wait_for(lambda: _everywhere(servers, key, "arm", "candidate"), seconds=1.0)
        assert _everywhere(servers, key, "version", 1)
