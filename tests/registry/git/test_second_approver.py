"""`manage.py prompts import --user NAME` on a prompt that requires a second approver: the
versions it publishes are NAME's, so NAME is the author someone else must approve; the first
version still becomes production by itself, and later imports never move it."""

from __future__ import annotations

from typing import Any

import pytest

from registry.errors import SecondApproverRequired
from registry.models import Label
from registry.services import label_move, prompt_create
from rollouts.models import Rollout
from rollouts.services import rollout_create
from tests.factories import actor_for
from tests.registry.git.test_sync import Repo, prompts

pytestmark = pytest.mark.django_db
NAME = "support.greeting"


def greeting(text: str) -> str:
    return f"name: {NAME}\ntemplate: |\n  {text} {{{{name}}}}!\n"


@pytest.fixture
def repo(tmp_path: Any, alice: Any, bob: Any) -> Repo:
    prompt_create(actor=actor_for(alice), name=NAME, owners=["bob"], require_second_approver=True)
    return Repo(tmp_path / "prompts-repo")


def labels() -> dict[str, int]:
    return dict(Label.objects.filter(prompt__name=NAME).values_list("name", "version__version"))


def test_the_first_imported_version_becomes_production_and_later_ones_wait_for_a_second_approver(
    repo, alice, bob
):
    repo.commit("Greet", {"greeting.yaml": greeting("Hello")})
    prompts("import", "--user", "alice", str(repo.path))
    assert labels() == {"production": 1}

    repo.commit("Warmer greeting", {"greeting.yaml": greeting("Hi there")})
    printed = prompts("import", "--user", "alice", str(repo.path))

    assert f"{NAME} v2 new version" in printed
    assert labels() == {"production": 1}
    with pytest.raises(SecondApproverRequired, match="v2 was published by alice"):
        label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=2)
    with pytest.raises(SecondApproverRequired):
        rollout_create(actor=actor_for(alice), prompt_name=NAME, candidate_version=2)
    assert not Rollout.objects.exists()

    rollout = rollout_create(actor=actor_for(bob), prompt_name=NAME, candidate_version=2)
    assert rollout.state == "running"


def test_a_version_imported_as_one_user_is_approved_by_another(repo, alice, bob):
    repo.commit("Greet", {"greeting.yaml": greeting("Hello")})
    prompts("import", "--user", "alice", str(repo.path))
    repo.commit("Warmer greeting", {"greeting.yaml": greeting("Hi there")})
    prompts("import", "--user", "bob", str(repo.path))

    label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=2)

    assert labels() == {"production": 2}
