"""Starting a rollout in the admin: the form pre-filled with the default plan and gates, which
calls rollout_create with the logged-in user (via "admin") and shows its errors on the form."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from registry.models import Label
from rollouts.admin.forms import RolloutStartForm
from rollouts.models import Rollout
from rollouts.plan import DEFAULT_GATES, DEFAULT_PLAN
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db

PLAN = [
    {"percent": 10, "min_duration_s": 60, "min_samples": 50},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
GATES = [{"metric": "error_rate", "max_increase_abs": 0.02}]


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def start_url(**query: str) -> str:
    url = reverse("admin:rollouts_rollout_add")
    return url + ("?" + "&".join(f"{key}={value}" for key, value in query.items()) if query else "")


def form_data(**changes: object) -> dict[str, object]:
    data = {
        "candidate_version": "2",
        "plan": json.dumps(PLAN),
        "gates": json.dumps(GATES),
        "start": "yes",
        "reason": "tighter answers",
    }
    return data | changes


def test_the_form_is_prefilled_with_the_version_asked_for_and_the_default_plan_and_gates(alice):
    make_prompt(alice, versions=3)

    response = logged_in(alice).get(start_url(prompt="support.answer", version="2"))

    assert response.status_code == 200
    form = response.context["form"]
    assert form.initial["candidate_version"] == 2
    assert [step["percent"] for step in json.loads(form.initial["plan"])] == [10, 25, 50, 100]
    assert json.loads(form.initial["gates"])[0] == {
        "metric": "latency_p95_ms",
        "source": "ingest",
        "max_increase_pct": 20,
    }
    assert form.initial["start"] == "yes"
    assert [number for number, _ in form.fields["candidate_version"].choices] == [3, 2], (
        "production (v1) is the baseline, not a candidate"
    )
    assert "the baseline is <strong>v1</strong>" in response.content.decode()


def test_creating_a_rollout_starts_it_and_opens_its_live_page(alice):
    make_prompt(alice, versions=2)

    response = logged_in(alice).post(start_url(prompt="support.answer"), form_data())

    rollout = Rollout.objects.get()
    assert response.status_code == 302 and response.url == reverse(
        "admin:rollouts_rollout_change", args=[rollout.pk]
    )
    assert (rollout.state, rollout.percent, rollout.candidate.version) == ("running", 10, 2)
    assert rollout.plan[0]["min_samples"] == 50 and rollout.gates[0]["max_increase_abs"] == 0.02
    entries = AuditEntry.objects.filter(object_type="rollout").order_by("id")
    assert [(e.action, e.actor_name, e.via, e.reason) for e in entries] == [
        ("rollout.create", "alice", "admin", "tighter answers"),
        ("rollout.started", "alice", "admin", "tighter answers"),
    ]


def test_the_prefilled_plan_and_gates_are_exactly_the_defaults(alice):
    make_prompt(alice, versions=2)
    defaults = RolloutStartForm.defaults()

    logged_in(alice).post(
        start_url(prompt="support.answer"), form_data(plan=defaults["plan"], gates=defaults["gates"])
    )

    rollout = Rollout.objects.get()
    assert rollout.plan == DEFAULT_PLAN.to_json()
    assert rollout.gates == [gate.to_json() for gate in DEFAULT_GATES]


def test_start_now_no_creates_a_pending_rollout(alice):
    make_prompt(alice, versions=2)

    logged_in(alice).post(start_url(prompt="support.answer"), form_data(start="no"))

    assert Rollout.objects.get().state == "pending"


def test_the_traffic_check_is_chosen_on_the_form_and_shown_on_the_live_page(alice):
    make_prompt(alice, versions=2)

    response = logged_in(alice).post(
        start_url(prompt="support.answer"), form_data(traffic_on_fail="observe"), follow=True
    )

    assert Rollout.objects.get().traffic == {"on_fail": "observe"}
    assert "on fail observe" in response.content.decode()


def test_a_plan_the_engine_refuses_is_shown_on_the_plan_field_and_nothing_is_created(alice):
    make_prompt(alice, versions=2)
    plan = [{"percent": 10, "min_duration_s": 60, "min_samples": 50}]

    response = logged_in(alice).post(start_url(prompt="support.answer"), form_data(plan=json.dumps(plan)))

    assert response.status_code == 400
    assert response.context["form"].errors["plan"] == ["plan[0].percent: the last step must be 100"]
    assert not Rollout.objects.exists()


def test_json_that_does_not_parse_is_a_form_error(alice):
    make_prompt(alice, versions=2)

    response = logged_in(alice).post(start_url(prompt="support.answer"), form_data(gates="[{"))

    assert response.status_code == 200
    assert response.context["form"].errors["gates"][0].startswith("The gates is not valid JSON")
    assert not Rollout.objects.exists()


DEEP_JSON = "[" * 100_000 + "]" * 100_000  # Python's json.loads raises RecursionError on it
NUL_STEP = [{"percent": 100, "min_duration_s": 0, "min_samples": 0, "note": "a\u0000b"}]
NUL_GATE = [{"metric": "score:\u0000", "max_drop_abs": 0.1}]


@pytest.mark.parametrize(
    ("field", "text", "error"),
    [
        ("plan", DEEP_JSON, "The plan is not valid JSON: depth limit exceeded"),
        ("gates", DEEP_JSON, "The gates is not valid JSON: depth limit exceeded"),
        ("plan", "[" * 65 + "]" * 65, "The plan nests lists and objects more than 64 levels deep."),
        ("gates", "[" * 65 + "]" * 65, "The gates nests lists and objects more than 64 levels deep."),
        ("plan", json.dumps(NUL_STEP), "The plan may not contain NUL (\\u0000) characters."),
        ("gates", json.dumps(NUL_GATE), "The gates may not contain NUL (\\u0000) characters."),
    ],
)
def test_json_the_api_refuses_is_a_form_error_and_nothing_is_stored(alice, field, text, error):
    make_prompt(alice, versions=2)
    before = (Rollout.objects.count(), AuditEntry.objects.count())

    response = logged_in(alice).post(start_url(prompt="support.answer"), form_data(**{field: text}))

    assert response.status_code == 200
    [shown] = response.context["form"].errors[field]
    assert shown.startswith(error) and shown in response.content.decode()
    assert (Rollout.objects.count(), AuditEntry.objects.count()) == before


def test_a_second_active_rollout_is_refused_with_the_409_message(alice):
    make_prompt(alice, versions=3)
    client = logged_in(alice)
    client.post(start_url(prompt="support.answer"), form_data())

    response = client.post(start_url(prompt="support.answer"), form_data(candidate_version="3"))

    assert response.status_code == 409
    assert "already has an active rollout" in response.content.decode()
    assert "it must end before another one starts" in response.content.decode()
    assert Rollout.objects.count() == 1


def test_a_prompt_without_production_is_refused_with_the_409_message(alice):
    prompt = make_prompt(alice, versions=2)
    Label.objects.filter(prompt=prompt, name="production").delete()

    response = logged_in(alice).post(start_url(prompt="support.answer"), form_data())

    assert response.status_code == 409
    assert "has no production version" in response.content.decode()
    assert not Rollout.objects.exists()


def test_someone_who_does_not_own_the_prompt_is_told_so_and_refused(alice, bob):
    make_prompt(alice, versions=2)
    client = logged_in(bob)

    page = client.get(start_url(prompt="support.answer"))
    refused = client.post(start_url(prompt="support.answer"), form_data())

    assert "You are not an owner of “support.answer”" in page.content.decode()
    assert refused.status_code == 403
    assert not Rollout.objects.exists()


def test_without_a_prompt_the_page_asks_for_one(alice):
    make_prompt(alice, versions=2)
    client = logged_in(alice)

    asked = client.get(start_url())
    unknown = client.get(start_url(prompt="nope"))

    assert asked.status_code == 200
    assert '<option value="support.answer">' in asked.content.decode()
    assert unknown.status_code == 404
    assert unknown.context["form"].errors["prompt"] == ["There is no prompt named “nope”."]


def test_the_version_page_links_to_the_start_form_unless_it_is_production(alice, bob):
    prompt = make_prompt(alice, versions=2)
    v1, v2 = prompt.versions.get(version=1), prompt.versions.get(version=2)
    client = logged_in(alice)
    link = 'href="/admin/rollouts/rollout/add/?prompt=support.answer&amp;version=2"'

    candidate = client.get(reverse("admin:registry_promptversion_change", args=[v2.pk]))
    production = client.get(reverse("admin:registry_promptversion_change", args=[v1.pk]))
    not_owner = logged_in(bob).get(reverse("admin:registry_promptversion_change", args=[v2.pk]))

    assert link in candidate.content.decode()
    assert "Start a rollout" not in production.content.decode()
    assert "Start a rollout" not in not_owner.content.decode()


def test_a_plan_starting_with_a_shadow_step_starts_exposing_nobody(alice):
    make_prompt(alice, versions=2)
    plan = [{"shadow": True, "percent": 20, "min_duration_s": 60, "min_samples": 50}, *PLAN]

    response = logged_in(alice).post(start_url(prompt="support.answer"), form_data(plan=json.dumps(plan)))

    rollout = Rollout.objects.get()
    assert response.status_code == 302
    assert (rollout.state, rollout.step_index, rollout.percent) == ("running", 0, 0)
    page = logged_in(alice).get(response.url).content.decode()
    assert "shadow 20%" in page and "runs unseen" in page


def test_a_shadow_step_after_an_exposed_one_is_shown_on_the_plan_field(alice):
    make_prompt(alice, versions=2)
    plan = [PLAN[0], {"shadow": True, "percent": 20, "min_duration_s": 60, "min_samples": 50}, *PLAN[1:]]

    response = logged_in(alice).post(start_url(prompt="support.answer"), form_data(plan=json.dumps(plan)))

    assert response.status_code == 400 and not Rollout.objects.exists()
    assert response.context["form"].errors["plan"] == [
        "plan[1].shadow: a shadow step is allowed only before the first exposed step"
    ]
