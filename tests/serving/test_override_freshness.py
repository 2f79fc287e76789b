"""Overrides keep the freshness contract (README, "Freshness"): real web servers of several
processes and threads, bursts of parallel requests on new connections right after each write.
An override added or ended through one server is served by both at once to a request naming
the write's generation and by every request after the check interval; one that expires stops
applying within a second, with no write at all."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from tests.factories import make_key, make_prompt
from tests.servers import base_env, database_url, web_server
from tests.serving.bursts import burst, request

OVERRIDES = "/api/v1/prompts/fresh.override/overrides"
CHECK_INTERVAL = 0.5


def _resolve(unit: str, tenant: str) -> str:
    return f"/api/v1/prompts/fresh.override/resolve?unit={unit}&attr.tenant={tenant}"


@pytest.mark.django_db(transaction=True)
def test_override_changes_reach_every_process_at_once_and_expiry_within_a_second(alice, tmp_path):
    make_prompt(alice, name="fresh.override", versions=3)
    writer = make_key(alice, "write")
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), WEB_THREADS="4")
    seen: Counter[str] = Counter()

    def expect(bases, path, *, version, arm, generation=None):
        headers = {"X-Promptramp-Min-Generation": generation} if generation else None
        for reply in burst(bases, path, key=writer, headers=headers):
            assert reply.status == 200, reply.body
            if reply.body.get("stale") is True:
                seen["stale-marked"] += 1
                continue
            seen["answers"] += 1
            assert (reply.body["version"], reply.body["arm"]) == (version, arm), (path, reply.body)

    with web_server(env, tmp_path / "a.log") as first, web_server(env, tmp_path / "b.log") as second:
        both = [first, second]
        for round_number in range(6):
            unit, tenant = f"qa-{round_number}", f"t{round_number}"
            by_unit = request(
                first, "POST", OVERRIDES, key=writer, body={"match": {"unit": unit}, "version": 2}
            )
            assert by_unit.status == 201, by_unit.body
            generation = by_unit.headers["X-Promptramp-Generation"]
            expect(both, _resolve(unit, tenant), version=2, arm="override", generation=generation)
            by_tenant = request(
                second,
                "POST",
                OVERRIDES,
                key=writer,
                body={"match": {"attribute": "tenant", "value": tenant}, "version": 3},
            )
            assert by_tenant.status == 201, by_tenant.body
            generation = by_tenant.headers["X-Promptramp-Generation"]
            expect(both, _resolve("someone", tenant), version=3, arm="override", generation=generation)
            # The unit's override ended through the other server: its tenant's applies now.
            ended = request(second, "DELETE", f"{OVERRIDES}/{by_unit.body['id']}", key=writer, body={})
            assert ended.status == 204
            generation = ended.headers["X-Promptramp-Generation"]
            expect(both, _resolve(unit, tenant), version=3, arm="override", generation=generation)
            time.sleep(CHECK_INTERVAL + 0.1)
            expect(both, _resolve(unit, tenant), version=3, arm="override")
            expect(both, _resolve(unit, "nobody"), version=1, arm="production")

        # An override that expires: served until then, and by no process 0.2 s later.
        expires_at = datetime.now(UTC) + timedelta(seconds=1.5)
        made = request(
            first,
            "POST",
            OVERRIDES,
            key=writer,
            body={"match": {"unit": "brief"}, "version": 2, "expires_at": expires_at.isoformat()},
        )
        assert made.status == 201, made.body
        expect(
            both,
            _resolve("brief", "x"),
            version=2,
            arm="override",
            generation=made.headers["X-Promptramp-Generation"],
        )
        while datetime.now(UTC) < expires_at + timedelta(seconds=0.2):
            time.sleep(0.05)
        expect(both, _resolve("brief", "x"), version=1, arm="production")

    assert seen["answers"] >= 6 * 5 * 32
    assert seen["stale-marked"] <= seen["answers"] // 100, seen
