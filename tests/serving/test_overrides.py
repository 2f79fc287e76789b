"""Overrides (README, "Overrides and attributes"): the API, the rules of who gets what, and the
answers of resolve and render through Django's view and the WSGI fast path with a Bearer key."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from access.services import apikey_create
from audit.models import AuditEntry
from core.actors import Actor
from core.state_cache import SERVING_STATE, state_changed
from rollouts.models import Rollout
from serving.models import Override
from serving.selectors import MAX_OVERRIDES
from tests.factories import make_key, make_prompt
from tests.serving.clients import django_get, fast_get
from tests.serving.helpers import put_rollout

pytestmark = pytest.mark.django_db
PROMPT = "/api/v1/prompts/support.answer"
RESOLVE = f"{PROMPT}/resolve"


@pytest.fixture(params=["django_view", "wsgi_short_way"])
def get(request):
    return {"django_view": django_get, "wsgi_short_way": fast_get}[request.param]


@pytest.fixture
def key(alice):
    return make_key(alice, "read")


@pytest.fixture
def writer(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(alice, 'write')}")
    return client


def add(writer, body, name="support.answer"):
    return writer.post(f"/api/v1/prompts/{name}/overrides", body, format="json")


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_a_unit_override_serves_its_version_with_arm_override(alice, key, writer, get):
    make_prompt(alice, versions=3)

    made = add(writer, {"match": {"unit": "qa-7"}, "version": 3, "reason": "QA"})

    assert made.status_code == 201, made.json()
    override_id = made.json()["id"]
    assert made.json()["match"] == {"unit": "qa-7"} and made.json()["active"] is True
    body = get(f"{RESOLVE}?unit=qa-7", key=key).json()
    assert body["version"] == 3 and body["template"].startswith("v3:")
    assert body["arm"] == "override" and body["override_id"] == override_id
    assert body["rollout_id"] is None and body["bucket"] is None and body["sticky"] is True
    other = get(f"{RESOLVE}?unit=qa-8", key=key).json()
    assert other["arm"] == "production" and other["version"] == 1 and "override_id" not in other


def test_an_attribute_override_matches_callers_carrying_that_value(alice, key, writer, get):
    make_prompt(alice, versions=2)
    made = add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "version": 2}).json()

    acme = get(f"{RESOLVE}?unit=u1&attr.tenant=acme&attr.plan=pro", key=key).json()
    other = get(f"{RESOLVE}?unit=u1&attr.tenant=globex", key=key).json()
    no_unit = get(f"{RESOLVE}?attr.tenant=acme", key=key).json()

    assert acme["arm"] == "override" and acme["version"] == 2 and acme["override_id"] == made["id"]
    assert other["arm"] == "production" and other["version"] == 1
    assert no_unit["arm"] == "override" and no_unit["sticky"] is False


def test_a_unit_match_wins_over_an_attribute_match_however_new(alice, key, writer, get):
    make_prompt(alice, versions=3)
    by_unit = add(writer, {"match": {"unit": "qa-7"}, "version": 2}).json()
    add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "version": 3})

    body = get(f"{RESOLVE}?unit=qa-7&attr.tenant=acme", key=key).json()

    assert body["override_id"] == by_unit["id"] and body["version"] == 2


def test_between_attribute_matches_the_newest_wins(alice, key, writer, get):
    make_prompt(alice, versions=3)
    add(writer, {"match": {"attribute": "plan", "value": "pro"}, "version": 2})
    newest = add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "version": 3}).json()

    body = get(f"{RESOLVE}?unit=u&attr.plan=pro&attr.tenant=acme", key=key).json()

    assert body["override_id"] == newest["id"] and body["version"] == 3


def test_an_arm_override_follows_whichever_rollout_is_active(alice, key, writer, get):
    prompt = make_prompt(alice, versions=3)
    override = add(writer, {"match": {"unit": "qa-7"}, "arm": "candidate"}).json()
    without = get(f"{RESOLVE}?unit=qa-7", key=key).json()
    assert without["arm"] == "override" and without["version"] == 1 and without["rollout_id"] is None

    # A pending rollout exposes no one, but QA gets its candidate before anyone else.
    pending = put_rollout(prompt, baseline=1, candidate=3, percent="0", state=Rollout.State.PENDING)
    before = get(f"{RESOLVE}?unit=qa-7", key=key).json()
    others = get(f"{RESOLVE}?unit=user-1", key=key).json()
    assert before["version"] == 3 and before["rollout_id"] == pending.pk
    assert before["override_id"] == override["id"]
    assert others["arm"] == "production" and others["version"] == 1

    Rollout.objects.filter(pk=pending.pk).update(state=Rollout.State.ABORTED)
    running = put_rollout(prompt, baseline=1, candidate=2, percent="0")
    during = get(f"{RESOLVE}?unit=qa-7", key=key).json()
    assert during["version"] == 2 and during["rollout_id"] == running.pk and during["arm"] == "override"


def test_a_baseline_override_keeps_a_unit_off_a_rollout_at_100_percent(alice, key, writer, get):
    prompt = make_prompt(alice, versions=2)
    rollout = put_rollout(prompt, baseline=1, candidate=2, percent="100")
    add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "arm": "baseline"})

    kept = get(f"{RESOLVE}?unit=u1&attr.tenant=acme", key=key).json()
    exposed = get(f"{RESOLVE}?unit=u1", key=key).json()

    assert kept["version"] == 1 and kept["arm"] == "override" and kept["rollout_id"] == rollout.pk
    assert exposed["version"] == 2 and exposed["arm"] == "candidate"


def test_an_expired_override_stops_applying_within_a_second_without_any_change(alice, key, writer, get):
    make_prompt(alice, versions=2)
    made = add(writer, {"match": {"unit": "qa-7"}, "version": 2, "expires_at": in_seconds(0.6)})
    assert made.status_code == 201, made.json()
    assert get(f"{RESOLVE}?unit=qa-7", key=key).json()["arm"] == "override"
    expires_at = datetime.fromisoformat(made.json()["expires_at"]).timestamp()

    while time.time() < expires_at + 0.05:
        time.sleep(0.02)
    body = get(f"{RESOLVE}?unit=qa-7", key=key).json()

    assert body["arm"] == "production" and body["version"] == 1
    listed = writer.get(f"{PROMPT}/overrides").json()["overrides"]
    assert [o["active"] for o in listed] == [False]


def test_render_takes_attributes_in_its_body(alice, writer):
    make_prompt(alice, versions=2)
    add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "version": 2})

    answer = writer.post(
        f"{PROMPT}/render",
        {"unit": "u1", "attributes": {"tenant": "acme"}, "variables": {"question": "q", "customer": "c"}},
        format="json",
    )

    assert answer.status_code == 200, answer.json()
    assert answer.json()["arm"] == "override" and answer.json()["rendered"] == "v2: Answer q for c"


@pytest.mark.parametrize(
    "query",
    [
        "attr.Tenant=acme",
        "attr.=x",
        "attr.tenant=" + "x" * 201,
        "attr.tenant=a&attr.tenant=b",
        "&".join(f"attr.a{n}=v" for n in range(21)),
    ],
)
def test_bad_attributes_are_refused_with_400(alice, key, get, query):
    make_prompt(alice)

    answer = get(f"{RESOLVE}?unit=u&{query}", key=key)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["error"]["details"]["field"] == "attributes"


def test_twenty_attributes_and_long_values_are_fine(alice, key, get):
    make_prompt(alice)
    query = "&".join(f"attr.a{n}={'v' * 200}" for n in range(20))

    assert get(f"{RESOLVE}?unit=u&{query}", key=key).status_code == 200


@pytest.mark.parametrize(
    "attributes",
    [["tenant"], {"Tenant": "x"}, {"tenant": 5}, {f"a{n}": "v" for n in range(21)}, "tenant=acme"],
)
def test_render_refuses_bad_attributes(alice, writer, attributes):
    make_prompt(alice)

    answer = writer.post(f"{PROMPT}/render", {"unit": "u", "attributes": attributes}, format="json")

    assert answer.status_code == 400 and answer.json()["error"]["details"]["field"] == "attributes"


@pytest.mark.parametrize(
    "body",
    [
        {"match": {"unit": "qa"}},
        {"match": {"unit": "qa"}, "version": 1, "arm": "candidate"},
        {"match": {"unit": "qa"}, "arm": "shadow"},
        {"match": {"unit": "qa"}, "version": "1"},
        {"match": {"unit": "qa"}, "version": 2**40},
        {"match": {"unit": ""}, "version": 1},
        {"match": {"unit": "x" * 513}, "version": 1},
        {"match": {"unit": "qa", "attribute": "tenant"}, "version": 1},
        {"match": {"attribute": "Tenant", "value": "acme"}, "version": 1},
        {"match": {"attribute": "tenant", "value": ""}, "version": 1},
        {"match": "qa", "version": 1},
        {"match": {"unit": "qa"}, "version": 1, "expires_at": "tomorrow"},
        {"match": {"unit": "qa"}, "version": 1, "expires_at": "2026-13-01T00:00:00Z"},
        {"match": {"unit": "qa"}, "version": 1, "expires_at": "2030-01-01T00:00:00"},
        {"match": {"unit": "qa"}, "version": 1, "expires_at": "2001-01-01T00:00:00Z"},
        {"match": {"unit": "qa"}, "version": 1, "reason": ["why"]},
        {"match": {"unit": "qa"}, "version": 1, "colour": "red"},
    ],
)
def test_bad_overrides_are_refused_with_400_and_nothing_is_stored(alice, writer, body):
    make_prompt(alice)

    answer = add(writer, body)

    assert answer.status_code == 400, answer.json()
    assert answer.json()["error"]["code"] == "validation_error"
    assert not Override.objects.exists()


def test_an_override_of_a_version_that_does_not_exist_is_404(alice, writer):
    make_prompt(alice)

    answer = add(writer, {"match": {"unit": "qa"}, "version": 9})

    assert answer.status_code == 404 and answer.json()["error"]["code"] == "version_not_found"


def test_a_second_override_of_the_same_match_is_409_until_the_first_ends(alice, writer):
    make_prompt(alice, versions=2)
    first = add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "version": 2}).json()

    again = add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "version": 1})
    assert again.status_code == 409 and again.json()["error"]["details"] == {"override_id": first["id"]}

    assert (
        writer.delete(f"{PROMPT}/overrides/{first['id']}", {"reason": "done"}, format="json").status_code
        == 204
    )
    assert add(writer, {"match": {"attribute": "tenant", "value": "acme"}, "version": 1}).status_code == 201


def test_a_prompt_holds_at_most_1000_applying_overrides(alice, writer):
    prompt = make_prompt(alice)
    Override.objects.bulk_create(
        Override(prompt=prompt, unit=f"u{n}", version=prompt.versions.get()) for n in range(MAX_OVERRIDES - 1)
    )
    assert add(writer, {"match": {"unit": "last"}, "version": 1}).status_code == 201

    refused = add(writer, {"match": {"unit": "one-more"}, "version": 1})

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "too_many_overrides"
    assert Override.objects.count() == MAX_OVERRIDES
    # Expired ones do not count: they are removed by the next add.
    Override.objects.filter(unit="u0").update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert add(writer, {"match": {"unit": "one-more"}, "version": 1}).status_code == 201
    assert not Override.objects.filter(unit="u0").exists()


def test_overrides_need_write_on_the_prompt_and_are_listed_with_read(alice, bob, key):
    make_prompt(alice)
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    not_owner = APIClient()
    not_owner.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(bob, 'write')}")
    _, limited_raw = apikey_create(
        actor=Actor.system(), name="other", user=alice, scopes=["write"], prompts=["other.*"]
    )
    limited = APIClient()
    limited.credentials(HTTP_AUTHORIZATION=f"Bearer {limited_raw}")
    body = {"match": {"unit": "qa"}, "version": 1}

    assert add(reader, body).status_code == 403
    assert add(not_owner, body).status_code == 403
    assert add(limited, body).json()["error"]["code"] == "prompt_not_allowed"
    assert limited.get(f"{PROMPT}/overrides").status_code == 403
    assert reader.get(f"{PROMPT}/overrides").json() == {"overrides": []}
    assert reader.get("/api/v1/prompts/nope/overrides").status_code == 404
    assert not Override.objects.exists()


def test_adding_and_ending_an_override_are_audited_and_answer_a_generation(alice, key, writer, get):
    make_prompt(alice, versions=2)
    made = add(writer, {"match": {"unit": "qa-7"}, "version": 2, "reason": "QA of v2"})
    assert made["X-Promptramp-Generation"]

    ended = writer.delete(f"{PROMPT}/overrides/{made.json()['id']}", {"reason": "QA done"}, format="json")

    assert ended.status_code == 204 and ended["X-Promptramp-Generation"]
    entries = list(AuditEntry.objects.filter(object_type="override").order_by("id"))
    assert [(e.action, e.reason, e.actor_name) for e in entries] == [
        ("override.create", "QA of v2", "alice"),
        ("override.delete", "QA done", "alice"),
    ]
    assert entries[0].data == {"match": {"unit": "qa-7"}, "version": 2, "arm": None, "expires_at": None}
    assert get(f"{RESOLVE}?unit=qa-7", key=key).json()["arm"] == "production"
    assert writer.delete(f"{PROMPT}/overrides/{made.json()['id']}").status_code == 404


def test_attributes_are_not_stored_nor_logged(alice, key, writer, caplog):
    make_prompt(alice)
    caplog.set_level("DEBUG")

    answer = django_get(f"{RESOLVE}?unit=u&attr.tenant=secret-tenant-name", key=key)

    assert answer.status_code == 200
    assert "secret-tenant-name" not in caplog.text
    assert not AuditEntry.objects.filter(data__icontains="secret-tenant-name").exists()


def test_the_snapshot_carries_each_override_with_the_version_it_serves(alice, writer):
    prompt = make_prompt(alice, versions=3)
    rollout = put_rollout(prompt, baseline=1, candidate=2, percent="10")
    by_arm = add(writer, {"match": {"unit": "qa-7"}, "arm": "candidate"}).json()
    by_version = add(
        writer,
        {"match": {"attribute": "tenant", "value": "acme"}, "version": 3, "expires_at": in_seconds(600)},
    ).json()

    entry = writer.get("/api/v1/snapshot").json()["prompts"]["support.answer"]

    assert entry["overrides"] == [
        {
            "id": by_arm["id"],
            "match": {"unit": "qa-7"},
            "version": 2,
            "arm": "candidate",
            "rollout_id": rollout.pk,
            "expires_at": None,
        },
        {
            "id": by_version["id"],
            "match": {"attribute": "tenant", "value": "acme"},
            "version": 3,
            "arm": None,
            "rollout_id": rollout.pk,
            "expires_at": datetime.fromisoformat(by_version["expires_at"]).isoformat(),
        },
    ]
    assert sorted(entry["override_versions"]) == ["2", "3"]
    assert entry["override_versions"]["3"]["template"].startswith("v3:")
    assert "reason" not in str(entry["overrides"])


def test_a_prompt_without_overrides_has_none_in_its_snapshot_entry(alice, writer):
    make_prompt(alice)

    entry = writer.get("/api/v1/snapshot").json()["prompts"]["support.answer"]

    assert "overrides" not in entry


def test_the_etag_tells_an_override_answer_from_a_production_one(alice, key, writer, get):
    make_prompt(alice)
    production = get(f"{RESOLVE}?unit=qa-7", key=key)
    add(writer, {"match": {"unit": "qa-7"}, "version": 1})

    overridden = get(f"{RESOLVE}?unit=qa-7", key=key, headers={"If-None-Match": production["ETag"]})

    assert overridden.status_code == 200 and overridden.json()["arm"] == "override"
    again = get(f"{RESOLVE}?unit=qa-7", key=key, headers={"If-None-Match": overridden["ETag"]})
    assert again.status_code == 304


def test_an_override_changed_in_the_database_reaches_the_state_on_its_change(alice, key, get):
    """The state reads overrides with the prompt: a change announced for it is served."""
    prompt = make_prompt(alice, versions=2)
    Override.objects.create(prompt=prompt, unit="qa-7", version=prompt.versions.get(version=2))
    state_changed(SERVING_STATE, [prompt.name])

    assert get(f"{RESOLVE}?unit=qa-7", key=key).json()["version"] == 2
