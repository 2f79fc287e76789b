"""The SDK (sdk/promptramp) resolves and renders from GET /api/v1/snapshot exactly as the server
does: same version, arm, bucket and rendered text for every unit."""

from decimal import Decimal
from urllib.parse import quote

import pytest

from promptramp.snapshot import Snapshot
from rollouts.models import Rollout
from tests.factories import make_prompt
from tests.serving.helpers import put_rollout, set_rollout
from tests.serving.vectors import bucketing_vectors

pytestmark = pytest.mark.django_db
UNITS = [f"user-{i}" for i in range(200)] + [v["unit"] for v in bucketing_vectors() if v["unit"]][:60]


@pytest.fixture
def client(alice, client_with_key):
    put_rollout(make_prompt(alice, name="text.split", versions=2), percent=Decimal("33.33"), salt="answer:1")
    put_rollout(make_prompt(alice, name="chat.split", kind="chat", versions=2), percent="50")
    put_rollout(
        make_prompt(alice, name="paused.split", versions=2), percent="12.5", state=Rollout.State.PAUSED
    )
    put_rollout(
        make_prompt(alice, name="pending.split", versions=2), percent="90", state=Rollout.State.PENDING
    )
    make_prompt(alice, name="plain", versions=1)
    shadowed = put_rollout(make_prompt(alice, name="shadow.split", versions=2), percent="0")
    shadow_plan = [
        {"shadow": True, "percent": 40, "min_duration_s": 0, "min_samples": 0},
        {"percent": 100, "min_duration_s": 0, "min_samples": 0},
    ]
    set_rollout(shadowed, plan=shadow_plan)
    return client_with_key(alice, "read")


def test_local_resolve_from_the_snapshot_equals_the_servers_resolve(client):
    response = client.get("/api/v1/snapshot")
    snapshot = Snapshot.parse(response.json(), response["ETag"])

    assert set(snapshot.prompts) == {
        "text.split",
        "chat.split",
        "paused.split",
        "pending.split",
        "plain",
        "shadow.split",
    }
    for name, served in snapshot.prompts.items():
        for unit in UNITS:
            theirs = client.get(f"/api/v1/prompts/{name}/resolve?unit={quote(unit, safe='')}").json()
            assert served.resolve(unit, None).as_dict() == theirs, (name, unit)


def test_local_render_equals_the_servers_render(client):
    response = client.get("/api/v1/snapshot")
    snapshot = Snapshot.parse(response.json(), response["ETag"])
    values = {"question": "Où est mon colis ?", "customer": 7, "extra": None}

    for name, served in snapshot.prompts.items():
        for unit in UNITS[:40]:
            theirs = client.post(
                f"/api/v1/prompts/{name}/render", {"unit": unit, "variables": values}, format="json"
            ).json()
            assert served.resolve(unit, values).as_dict() == theirs, (name, unit)


def test_local_resolve_in_a_shadow_step_carries_the_same_shadow_as_the_servers(client):
    response = client.get("/api/v1/snapshot")
    served = Snapshot.parse(response.json(), response["ETag"]).prompts["shadow.split"]

    sampled = [unit for unit in UNITS if "shadow" in served.resolve(unit, None).as_dict()]

    assert 40 < len(sampled) < 170  # about 40% of 260
    for unit in sampled:
        theirs = client.get(f"/api/v1/prompts/shadow.split/resolve?unit={quote(unit, safe='')}").json()
        assert theirs["shadow"]["version"] == 2 and theirs["arm"] == "baseline"
