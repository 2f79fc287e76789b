"""The second approver in the registry's services: moving `production` (a label move, a version
published with the label) on a prompt that requires one, and who may turn the requirement on
and off."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEntry
from core.actors import Actor
from core.errors import Forbidden, ValidationFailed
from registry.errors import AdminRequired, SecondApproverRequired
from registry.models import Label, Prompt, PromptVersion
from registry.services import label_move, prompt_create, prompt_update, version_create
from tests.factories import UserFactory, actor_for

pytestmark = pytest.mark.django_db
NAME = "support.answer"


def guarded_prompt(author: Any, *others: Any, versions: int = 2) -> Prompt:
    """support.answer, requiring a second approver, owned by ``author`` and ``others``, with
    ``versions`` versions published by ``author`` (v1 is production)."""
    owners = [author.get_username(), *(user.get_username() for user in others)]
    prompt = prompt_create(actor=actor_for(author), name=NAME, owners=owners, require_second_approver=True)
    for n in range(1, versions + 1):
        publish(author, f"v{n}: answer {{{{question}}}}")
    prompt.refresh_from_db()
    return prompt


def publish(user: Any, template: str, labels: list[str] | None = None) -> tuple[PromptVersion, bool]:
    return version_create(actor=actor_for(user), prompt_name=NAME, template=template, labels=labels or [])


def labels() -> dict[str, int]:
    return dict(Label.objects.filter(prompt__name=NAME).values_list("name", "version__version"))


def production_moves() -> list[tuple[str, int | None, int]]:
    entries = AuditEntry.objects.filter(action="label.move", object_id="production").order_by("id")
    return [(e.actor_name, e.data["from_version"], e.data["to_version"]) for e in entries]


# --- label moves --------------------------------------------------------------------------------


def test_the_author_cannot_move_production_to_their_version_and_another_owner_can(alice, bob):
    guarded_prompt(alice, bob)

    with pytest.raises(SecondApproverRequired) as refused:
        label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=2)

    assert refused.value.status_code == 403
    assert refused.value.code == "second_approver_required"
    assert "v2 was published by alice, so someone other than alice must make v2 production" in str(
        refused.value
    )
    assert refused.value.details == {"prompt": NAME, "version": 2, "author": "alice"}
    assert labels() == {"production": 1}
    assert production_moves() == [("alice", None, 1)]

    label_move(actor=actor_for(bob), prompt_name=NAME, label="production", version=2, reason="reviewed")

    assert labels() == {"production": 2}
    assert production_moves() == [("alice", None, 1), ("bob", 1, 2)]


def test_the_rule_is_about_the_version_production_moves_to_not_the_one_it_leaves(alice, bob):
    guarded_prompt(alice, bob, versions=1)
    publish(bob, "bob's wording {{question}}")

    label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=2)
    assert labels() == {"production": 2}

    with pytest.raises(SecondApproverRequired):  # back to alice's own v1: a move like any other
        label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=1)
    assert labels() == {"production": 2}


def test_an_admin_who_wrote_the_version_is_still_its_author(alice, admin_user):
    guarded_prompt(admin_user, alice, versions=1)
    publish(admin_user, "root's wording {{question}}")

    with pytest.raises(SecondApproverRequired):
        label_move(actor=actor_for(admin_user), prompt_name=NAME, label="production", version=2)

    label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=2)
    assert labels() == {"production": 2}


def test_other_labels_and_a_move_to_where_production_already_is_need_no_second_approver(alice):
    guarded_prompt(alice)

    label_move(actor=actor_for(alice), prompt_name=NAME, label="staging", version=2)
    label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=1, reason="no-op")

    assert labels() == {"production": 1, "staging": 2}


def test_without_the_requirement_the_author_moves_production(alice):
    prompt_create(actor=actor_for(alice), name=NAME)
    publish(alice, "v1 {{question}}")
    publish(alice, "v2 {{question}}")

    label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=2)

    assert labels() == {"production": 2}


# --- versions published with production --------------------------------------------------------


def test_publishing_new_content_with_production_is_refused_and_creates_nothing(alice, bob):
    guarded_prompt(alice, bob, versions=1)
    audit_before = AuditEntry.objects.count()

    for author in (alice, bob):  # whoever publishes a new version is its author
        with pytest.raises(SecondApproverRequired):
            publish(author, "new {{question}}", labels=["staging", "production"])

    assert list(PromptVersion.objects.values_list("version", flat=True)) == [1]
    assert Prompt.objects.get(name=NAME).latest_version == 1
    assert labels() == {"production": 1}
    assert AuditEntry.objects.count() == audit_before


def test_publishing_the_latest_content_again_with_production_approves_it(alice, bob):
    guarded_prompt(alice, bob)

    with pytest.raises(SecondApproverRequired):
        publish(alice, "v2: answer {{question}}", labels=["production"])
    version, created = publish(bob, "v2: answer {{question}}", labels=["production"])

    assert (version.version, created) == (2, False)
    assert labels() == {"production": 2}
    assert production_moves()[-1] == ("bob", 1, 2)


def test_the_first_version_becomes_production_without_a_second_approver(alice):
    prompt_create(actor=actor_for(alice), name=NAME, require_second_approver=True)

    version, created = publish(alice, "v1 {{question}}")

    assert (version.version, created) == (1, True)
    assert labels() == {"production": 1}


def test_the_first_version_asked_for_with_production_needs_none_either(alice):
    prompt_create(actor=actor_for(alice), name=NAME, require_second_approver=True)

    publish(alice, "v1 {{question}}", labels=["production", "staging"])

    assert labels() == {"production": 1, "staging": 1}


# --- unknown authors and the system --------------------------------------------------------------


def test_a_deleted_authors_version_is_approved_by_another_user_not_by_an_account_of_their_name(alice, bob):
    carol = UserFactory(username="carol")
    guarded_prompt(alice, bob, carol, versions=1)
    publish(carol, "carol's wording {{question}}")
    carol.delete()
    assert PromptVersion.objects.get(version=2).author_id is None
    carol_again = UserFactory(username="carol")
    prompt_update(actor=actor_for(alice), prompt_name=NAME, owners=["alice", "bob", "carol"])

    with pytest.raises(SecondApproverRequired) as refused:
        label_move(actor=actor_for(carol_again), prompt_name=NAME, label="production", version=2)
    assert refused.value.details["author"] == "carol"

    label_move(actor=actor_for(bob), prompt_name=NAME, label="production", version=2)
    assert labels() == {"production": 2}


def test_the_system_acting_on_its_own_approves_nothing(alice):
    guarded_prompt(alice)

    with pytest.raises(SecondApproverRequired) as refused:
        label_move(actor=Actor.system(), prompt_name=NAME, label="production", version=2)

    assert "a user other than its author must make v2 production" in str(refused.value)
    assert labels() == {"production": 1}


def test_a_version_the_system_published_may_be_approved_by_any_user(alice):
    guarded_prompt(alice, versions=1)
    version_create(actor=Actor.system(), prompt_name=NAME, template="loaded {{question}}")

    label_move(actor=actor_for(alice), prompt_name=NAME, label="production", version=2)

    assert labels() == {"production": 2}


# --- turning it on and off -----------------------------------------------------------------------


def test_an_owner_turns_the_requirement_on_and_it_is_audited(alice):
    prompt_create(actor=actor_for(alice), name=NAME)

    prompt_update(actor=actor_for(alice), prompt_name=NAME, require_second_approver=True)

    assert Prompt.objects.get(name=NAME).require_second_approver is True
    entry = AuditEntry.objects.filter(action="prompt.update").get()
    assert (entry.actor_name, entry.data) == (
        "alice",
        {"changes": {"require_second_approver": {"from": False, "to": True}}},
    )


def test_someone_who_does_not_own_the_prompt_cannot_turn_it_on(alice, bob):
    prompt_create(actor=actor_for(alice), name=NAME)

    with pytest.raises(Forbidden):
        prompt_update(actor=actor_for(bob), prompt_name=NAME, require_second_approver=True)

    assert Prompt.objects.get(name=NAME).require_second_approver is False


def test_only_an_admin_turns_it_off_and_a_refusal_changes_nothing(alice, admin_user):
    guarded_prompt(alice, versions=0)

    with pytest.raises(AdminRequired) as refused:
        prompt_update(
            actor=actor_for(alice), prompt_name=NAME, description="relaxed", require_second_approver=False
        )

    assert (refused.value.status_code, refused.value.code) == (403, "admin_required")
    prompt = Prompt.objects.get(name=NAME)
    assert (prompt.require_second_approver, prompt.description) == (True, "")
    assert not AuditEntry.objects.filter(action="prompt.update").exists()

    prompt_update(actor=actor_for(admin_user), prompt_name=NAME, require_second_approver=False)

    assert Prompt.objects.get(name=NAME).require_second_approver is False
    entry = AuditEntry.objects.filter(action="prompt.update").get()
    assert (entry.actor_name, entry.data["changes"]) == (
        "root",
        {"require_second_approver": {"from": True, "to": False}},
    )


def test_an_owner_may_leave_it_on_while_changing_other_fields(alice):
    guarded_prompt(alice, versions=0)

    prompt_update(actor=actor_for(alice), prompt_name=NAME, description="d", require_second_approver=True)

    assert Prompt.objects.get(name=NAME).description == "d"


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_the_requirement_is_true_or_false(alice, value):
    with pytest.raises(ValidationFailed):
        prompt_create(actor=actor_for(alice), name=NAME, require_second_approver=value)
    prompt_create(actor=actor_for(alice), name=NAME)
    with pytest.raises(ValidationFailed):
        prompt_update(actor=actor_for(alice), prompt_name=NAME, require_second_approver=value)
