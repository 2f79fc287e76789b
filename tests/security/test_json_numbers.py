"""NaN, Infinity and -Infinity are not JSON, though Python reads them: PostgreSQL cannot store
them, so a staff user's config or plan holding one used to end in a 500. The admin's forms and
the API refuse them with a clear error and store nothing."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from rollouts.models import Rollout
from tests.factories import make_prompt

pytestmark = pytest.mark.django_db
NOT_NUMBERS = ["NaN", "Infinity", "-Infinity"]


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("constant", NOT_NUMBERS)
def test_the_admin_refuses_a_config_that_is_not_a_number_on_the_form(alice, constant):
    prompt = make_prompt(alice, versions=1)

    response = logged_in(alice).post(
        reverse("admin:registry_prompt_new_version", args=[prompt.pk]),
        {"template": "new {{x}}", "config": f'{{"temperature": {constant}}}'},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["config"] == [
        f"Config is not valid JSON: {constant} is not a number JSON allows (write a finite number)."
    ]
    assert prompt.versions.count() == 1


@pytest.mark.parametrize(
    ("field", "constant"), [("plan", "NaN"), ("gates", "Infinity"), ("gates", "-Infinity")]
)
def test_the_admin_refuses_a_plan_or_gates_that_is_not_a_number_on_the_form(alice, field, constant):
    make_prompt(alice, versions=2)
    value = {
        "plan": '[{"percent": NaN, "min_duration_s": 0, "min_samples": 0}]',
        "gates": f'[{{"metric": "error_rate", "max_increase": {constant}}}]',
    }[field]
    data = {"candidate_version": "2", "plan": '[{"percent": 100}]', "gates": "[]", "start": "yes"} | {
        field: value
    }

    response = logged_in(alice).post(reverse("admin:rollouts_rollout_add") + "?prompt=support.answer", data)

    assert response.status_code == 200
    [error] = response.context["form"].errors[field]
    assert f"{constant} is not a number JSON allows" in error
    assert not Rollout.objects.exists()


@pytest.mark.parametrize("constant", NOT_NUMBERS)
def test_the_api_refuses_a_config_or_plan_that_is_not_a_number(alice, client_with_key, constant):
    prompt = make_prompt(alice, versions=2)
    writer = client_with_key(alice, "write")

    version = writer.post(
        f"/api/v1/prompts/{prompt.name}/versions",
        f'{{"template": "x", "model": "m", "config": {{"temperature": {constant}}}}}',
        content_type="application/json",
    )
    rollout = writer.post(
        f"/api/v1/prompts/{prompt.name}/rollouts",
        f'{{"candidate_version": 2, "plan": [{{"percent": {constant}, "min_samples": 0}}]}}',
        content_type="application/json",
    )

    for response in (version, rollout):
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert prompt.versions.count() == 2
    assert not Rollout.objects.exists()
