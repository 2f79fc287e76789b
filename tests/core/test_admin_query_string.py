"""Every admin page refuses a query string holding a NUL character (core.admin.AdminQueryMiddleware):
a 400 with a short plain message before any query runs, never the 500 of PostgreSQL's text that
cannot hold it; query strings without NUL filter and search as before."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from core.admin import NUL_REFUSAL
from rollouts.services import rollout_create
from serving.services import override_create
from tests.factories import actor_for, make_key, make_prompt

pytestmark = pytest.mark.django_db

# Every list of the admin, with the filters it offers (none: Django's own filters of a field).
FILTERS = {
    "registry_prompt": ["kind", "tag"],
    "registry_promptversion": [],
    "rollouts_rollout": ["state", "prompt"],
    "serving_override": ["prompt"],
    "access_apikey": ["status"],
    "audit_auditentry": ["action", "prompt", "actor"],
    "auth_user": ["is_staff__exact", "groups__id__exact"],
    "auth_group": [],
}
FILTERED = [(page, name) for page, names in FILTERS.items() for name in names]
NUL = "a\x00b"


def list_url(page: str) -> str:
    return reverse(f"admin:{page}_changelist")


@pytest.fixture
def admin_browser(admin_user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def one_of_each(alice) -> None:  # type: ignore[no-untyped-def]
    """A prompt with two versions, a rollout of it, an override, an API key and a group."""
    make_prompt(alice, versions=2)
    rollout_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        candidate_version=2,
        plan=[{"percent": 100, "min_duration_s": 0, "min_samples": 0}],
        traffic={"on_fail": "observe"},
    )
    override_create(actor=actor_for(alice), prompt_name="support.answer", match={"unit": "qa-7"}, version=1)
    make_key(alice)
    Group.objects.create(name="reviewers")


def assert_refused(answer) -> None:  # type: ignore[no-untyped-def]
    assert answer.status_code == 400
    assert answer["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.content.decode() == NUL_REFUSAL


@pytest.mark.parametrize(("page", "name"), FILTERED)
def test_a_nul_in_a_filter_value_is_refused_before_any_query(
    page, name, admin_browser, one_of_each, django_assert_num_queries
):
    with django_assert_num_queries(0):
        answer = admin_browser.get(list_url(page), {name: NUL})

    assert_refused(answer)


@pytest.mark.parametrize("page", FILTERS)
def test_a_nul_in_the_search_box_is_refused(page, admin_browser, one_of_each):
    answer = admin_browser.get(list_url(page), {"q": NUL})

    assert_refused(answer)


@pytest.mark.parametrize("page", FILTERS)
def test_a_nul_in_a_parameter_name_is_refused(page, admin_browser, one_of_each):
    answer = admin_browser.get(list_url(page), {NUL: "1"})

    assert_refused(answer)


def test_a_nul_written_into_the_address_is_refused_among_other_parameters(admin_browser, one_of_each):
    answer = admin_browser.get(f"{list_url('serving_override')}?o=1&prompt=a%00b")

    assert_refused(answer)


def test_a_nul_in_the_query_string_of_an_object_page_is_refused(admin_browser, one_of_each):
    answer = admin_browser.get(reverse("admin:serving_override_prompt", args=["support.answer"]), {"x": NUL})

    assert_refused(answer)


@pytest.mark.parametrize(
    ("page", "query", "listed"),
    [
        ("registry_prompt", {"kind": "text"}, 1),
        ("registry_prompt", {"kind": "chat"}, 0),
        ("registry_promptversion", {"q": "support"}, 2),
        ("rollouts_rollout", {"prompt": "support.answer"}, 1),
        ("rollouts_rollout", {"prompt": "sales.pitch"}, 0),
        ("serving_override", {"prompt": "support.answer"}, 1),
        ("access_apikey", {"status": "revoked"}, 0),
        ("access_apikey", {"status": "active", "q": "test"}, 1),
        ("audit_auditentry", {"action": "override.create", "actor": "alice"}, 1),
        ("auth_user", {"is_superuser__exact": "1"}, 1),
        ("auth_group", {"q": "review"}, 1),
    ],
)
def test_a_query_string_without_nul_filters_and_searches_as_before(
    page, query, listed, admin_browser, one_of_each
):
    answer = admin_browser.get(list_url(page), query)

    assert answer.status_code == 200
    assert answer.context["cl"].result_count == listed
