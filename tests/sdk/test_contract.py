"""The client against a server that speaks the promptramp contract.

`base_url` is a local FakeServer unless PROMPTRAMP_TEST_BASE_URL names a real one (see conftest).
"""

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from promptramp import Client
from promptramp.events import outcome_event
from promptramp.transport import Transport

MakeClient = Callable[..., Client]
UNITS = [f"user-{i}" for i in range(25)] + ["tenant/acme", "Ünïcødé-👤"]
RESOLVE_FIELDS = ("name", "version", "kind", "template", "messages", "model", "config")
RESOLVE_FIELDS += ("variables", "arm", "rollout_id", "bucket", "sticky")


def call(base_url: str, api_key: str, path: str, payload: Any = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + path,
        data=data,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def same_fields(ours: dict[str, Any], theirs: dict[str, Any], *extra: str) -> bool:
    return all(ours.get(key) == theirs.get(key) for key in RESOLVE_FIELDS + extra)


@pytest.fixture
def client(base_url: str, api_key: str, make_client: MakeClient) -> Client:
    client = make_client(base_url, api_key, flush_interval=3600)
    assert client.snapshot is not None and client.snapshot.prompts, "the server has no prompt to resolve"
    return client


def test_the_snapshot_is_revalidated_with_its_etag(client: Client) -> None:
    first = client.snapshot

    assert first is not None and first.etag
    assert client.refresh()
    assert client.snapshot is first


def test_local_resolve_matches_the_servers_resolve(client: Client, base_url: str, api_key: str) -> None:
    for name in list(client.snapshot.prompts)[:10]:  # type: ignore[union-attr]
        for unit in UNITS:
            path = f"/api/v1/prompts/{name}/resolve?" + urllib.parse.urlencode({"unit": unit})

            theirs = call(base_url, api_key, path)

            assert same_fields(client.get(name, unit=unit).as_dict(), theirs), (name, unit)


def test_local_render_matches_the_servers_render(client: Client, base_url: str, api_key: str) -> None:
    for name in list(client.snapshot.prompts)[:10]:  # type: ignore[union-attr]
        for unit in UNITS[:5]:
            names = client.get(name, unit=unit).variables
            variables = {variable: f"<{variable} 1>" for variable in names} | {"not_used": 2}
            path = f"/api/v1/prompts/{name}/render"

            theirs = call(base_url, api_key, path, {"unit": unit, "variables": variables})

            ours = client.get(name, unit=unit, variables=variables).as_dict()
            assert same_fields(ours, theirs, "rendered", "unused_variables"), (name, unit)


def test_reported_events_are_accepted_and_a_resent_batch_counts_once(
    client: Client, base_url: str, api_key: str
) -> None:
    results = [client.get(name, unit="contract") for name in client.snapshot.prompts]  # type: ignore[union-attr]
    events = [outcome_event(result, latency_ms=100.0, scores={"helpfulness": 0.9}) for result in results]
    transport = Transport(base_url, api_key, timeout=5)

    exposures = [
        {"rollout_id": result.rollout_id, "arm": result.arm, "minute": int(time.time() // 60), "count": 1}
        for result in results
        if result.rollout_id is not None
    ]
    batch_id = str(uuid.uuid4())

    first = transport.post_events(events, batch_id=batch_id, exposures=exposures)
    again = transport.post_events(events, batch_id=batch_id, exposures=exposures)

    counted = {"exposures": len(exposures)} if exposures else {}
    assert (first.status, json.loads(first.body)) == (
        202,
        {"accepted": len(events), "duplicates": 0, "unmatched": 0} | counted,
    )
    assert (again.status, json.loads(again.body)) == (
        202,
        {"accepted": 0, "duplicates": len(events), "unmatched": 0} | ({"exposures": 0} if exposures else {}),
    )


def test_close_delivers_the_queued_events(client: Client) -> None:
    name = next(iter(client.snapshot.prompts))  # type: ignore[union-attr]
    for unit in ("a", "b", "c"):
        with client.track(name, unit=unit) as call:
            call.cost_usd = 0.001

    assert client.close(timeout=10)
    counts = client.event_counts()
    assert (counts.accepted + counts.duplicates, counts.pending) == (3, 0)


def test_a_reported_call_is_scored_late_and_a_score_of_no_call_is_unmatched(client: Client) -> None:
    name = next(iter(client.snapshot.prompts))  # type: ignore[union-attr]
    with client.track(name, unit="late") as call:
        pass

    client.score(call.event_id, {"judge": 0.5})
    client.score(str(uuid.uuid4()), {"judge": 0.5})
    assert client.close(timeout=10)

    counts = client.event_counts()
    assert (counts.accepted, counts.unmatched, counts.rejected, counts.pending) == (2, 1, 0, 0)
