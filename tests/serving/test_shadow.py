"""A rollout in its shadow step: every caller is served the baseline, and the answers of the
units in the shadow sample also carry the candidate (resolve through both ways in, render, the
snapshot)."""

import pytest
from rest_framework.test import APIClient

from registry.services import version_create
from rollouts.services import rollout_create, rollout_promote
from serving.bucketing import bucket_of
from tests.factories import actor_for, make_key, make_prompt
from tests.serving.clients import django_get, fast_get

pytestmark = pytest.mark.django_db
URL = "/api/v1/prompts/support.answer/resolve"
SHADOW_PLAN = [
    {"shadow": True, "percent": 30, "min_duration_s": 60, "min_samples": 10},
    {"percent": 10, "min_duration_s": 60, "min_samples": 10},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
UNITS = [f"user-{n}" for n in range(200)]


@pytest.fixture(params=["django_view", "wsgi_short_way"])
def get(request):
    return {"django_view": django_get, "wsgi_short_way": fast_get}[request.param]


@pytest.fixture
def key(alice):
    return make_key(alice, "read")


@pytest.fixture
def shadowed(alice):
    """support.answer v1 (production) with v2 in a 30% shadow step."""
    make_prompt(alice, versions=2)
    return rollout_create(
        actor=actor_for(alice), prompt_name="support.answer", candidate_version=2, plan=SHADOW_PLAN, salt="s"
    )


def in_sample(unit: str) -> bool:
    return bucket_of("s", unit) < 3000


def test_every_caller_gets_the_baseline_and_the_sample_also_the_candidate_as_shadow(shadowed, key, get):
    answers = {unit: get(f"{URL}?unit={unit}", key=key).json() for unit in UNITS}

    assert all(a["arm"] == "baseline" and a["version"] == 1 for a in answers.values())
    assert all(
        a["rollout_id"] == shadowed.pk and a["bucket"] == bucket_of("s", u) for u, a in answers.items()
    )
    sampled = {unit for unit, answer in answers.items() if "shadow" in answer}
    assert sampled == {unit for unit in UNITS if in_sample(unit)}
    assert 30 < len(sampled) < 90  # about 30% of 200
    assert answers[min(sampled)]["shadow"] == {
        "version": 2,
        "template": "v2: Answer {{question}} for {{customer}}",
        "model": "gpt-4o-mini",
        "config": {"temperature": 0.2},
        "variables": ["question", "customer"],
    }


def test_a_shadow_answer_and_a_plain_one_have_different_etags(shadowed, key, get):
    sampled = next(u for u in UNITS if in_sample(u))
    plain = next(u for u in UNITS if not in_sample(u))

    with_shadow, without = get(f"{URL}?unit={sampled}", key=key), get(f"{URL}?unit={plain}", key=key)

    assert with_shadow["ETag"] != without["ETag"]
    again = get(f"{URL}?unit={sampled}", key=key, headers={"If-None-Match": with_shadow["ETag"]})
    assert again.status_code == 304


@pytest.fixture
def reader(alice):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(alice, 'read')}")
    return client


def test_render_renders_the_shadow_too(shadowed, reader):
    unit = next(u for u in UNITS if in_sample(u))

    body = reader.post(
        "/api/v1/prompts/support.answer/render",
        {"unit": unit, "variables": {"question": "Where?", "customer": "Ada"}},
        format="json",
    ).json()

    assert body["rendered"] == "v1: Answer Where? for Ada" and body["arm"] == "baseline"
    assert body["shadow"]["rendered"] == "v2: Answer Where? for Ada" and body["shadow"]["version"] == 2


def test_a_shadow_that_needs_a_missing_variable_is_left_out_with_shadow_error(alice, reader):
    make_prompt(alice, versions=1)
    actor = actor_for(alice)
    version_create(actor=actor, prompt_name="support.answer", template="v2: {{question}} in {{tone}}")
    rollout_create(actor=actor, prompt_name="support.answer", candidate_version=2, plan=SHADOW_PLAN, salt="s")
    unit = next(u for u in UNITS if in_sample(u))

    response = reader.post(
        "/api/v1/prompts/support.answer/render",
        {"unit": unit, "variables": {"question": "Where?", "customer": "Ada"}},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert body["rendered"] == "v1: Answer Where? for Ada" and "shadow" not in body
    assert body["shadow_error"]["code"] == "missing_variables" and body["shadow_error"]["missing"] == ["tone"]


def test_the_snapshot_publishes_a_shadow_step_as_percent_0_with_shadow_percent(shadowed, reader):
    body = reader.get("/api/v1/snapshot").json()

    assert body["format"] == 2
    rollout = body["prompts"]["support.answer"]["rollout"]
    assert rollout["percent"] == 0 and rollout["shadow_percent"] == 30
    assert rollout["candidate"]["version"] == 2


def test_once_the_shadow_step_is_promoted_the_answers_carry_no_shadow_and_expose_the_first_step(
    alice, shadowed, key, get
):
    rollout_promote(actor=actor_for(alice), rollout_id=shadowed.pk, reason="the shadow looked fine")

    answers = [get(f"{URL}?unit={unit}", key=key).json() for unit in UNITS]

    assert not any("shadow" in answer for answer in answers)
    assert {a["arm"] for a in answers if a["bucket"] < 1000} <= {"candidate"}
    assert {a["arm"] for a in answers if a["bucket"] >= 1000} == {"baseline"}
    assert any(a["arm"] == "candidate" and a["version"] == 2 for a in answers)


def test_a_shadow_too_large_to_render_is_left_out_with_shadow_error(alice, reader):
    make_prompt(alice, versions=1)
    actor = actor_for(alice)
    version_create(actor=actor, prompt_name="support.answer", template="{{question}} " * 20)
    rollout_create(actor=actor, prompt_name="support.answer", candidate_version=2, plan=SHADOW_PLAN, salt="s")
    unit = next(u for u in UNITS if in_sample(u))

    response = reader.post(
        "/api/v1/prompts/support.answer/render",
        {"unit": unit, "variables": {"question": "x" * 60_000, "customer": "Ada"}},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert len(body["rendered"]) > 60_000 and "shadow" not in body
    assert body["shadow_error"]["code"] == "render_too_large"
