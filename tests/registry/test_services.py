"""The registry's writes (registry/services.py) against the real database: version numbers,
content de-duplication, the production label, label rules, and the audit entries each writes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEntry
from core.errors import Conflict, Forbidden, ValidationFailed
from registry.errors import LabelNotFound, ProductionFrozen, VersionNotFound
from registry.models import Label, PromptVersion
from registry.services import label_delete, label_move, prompt_create, prompt_update, version_create
from rollouts.models import Rollout
from tests.factories import actor_for, make_prompt


def labels_of(prompt_name: str) -> dict[str, int]:
    rows = Label.objects.filter(prompt__name=prompt_name).values_list("name", "version__version")
    return dict(rows)


def actions_of(prompt_name: str) -> list[str]:
    return list(
        AuditEntry.objects.filter(prompt_name=prompt_name).order_by("id").values_list("action", flat=True)
    )


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``count`` threads released together, each on its own database connection:
    what each returned, or the exception it raised."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            start.wait()
            results[index] = work(index)
        except Exception as error:  # the test looks at every outcome, failures included
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# --- versions -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_number_versions_one_by_one_without_gap_or_collision(alice: Any) -> None:
    # Given a prompt
    make_prompt(alice, versions=0)
    actor = actor_for(alice)

    # When eight different versions are published at the same moment
    results = at_once(
        8,
        lambda i: version_create(actor=actor, prompt_name="support.answer", template=f"take {i}: {{{{q}}}}"),
    )

    # Then each got its own number, 1 to 8, and the prompt's latest is 8
    assert [type(result) for result in results] == [tuple] * 8, results
    numbers = sorted(version.version for version, _created in results)
    assert numbers == list(range(1, 9))
    assert sorted(PromptVersion.objects.values_list("version", flat=True)) == list(range(1, 9))
    assert PromptVersion.objects.get(version=8).prompt.latest_version == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_prompt_name_make_one_prompt(alice: Any) -> None:
    actor = actor_for(alice)

    results = at_once(4, lambda i: prompt_create(actor=actor, name="support.answer"))

    conflicts = [result for result in results if isinstance(result, Conflict)]
    assert len(conflicts) == 3 and {conflict.code for conflict in conflicts} == {"prompt_exists"}
    assert actions_of("support.answer") == ["prompt.create"]


@pytest.mark.django_db
def test_content_equal_to_the_latest_returns_the_latest_and_still_applies_the_labels(alice: Any) -> None:
    # Given a prompt whose latest version is v2
    make_prompt(alice, versions=2)
    latest = PromptVersion.objects.get(version=2)

    # When v2's content is published again, asking for "staging"
    version, created = version_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        template=latest.template,
        model=latest.model,
        config=latest.config,
        message="again",
        labels=["staging"],
    )

    # Then no version is made, v2 is returned, and the label is applied and audited
    assert (version.pk, created) == (latest.pk, False)
    assert PromptVersion.objects.count() == 2
    assert labels_of("support.answer") == {"production": 1, "staging": 2}
    assert actions_of("support.answer")[-1] == "label.move"
    assert actions_of("support.answer").count("version.create") == 2


@pytest.mark.django_db
def test_content_equal_to_an_older_version_makes_a_new_version(alice: Any) -> None:
    make_prompt(alice, versions=2)
    first = PromptVersion.objects.get(version=1)

    version, created = version_create(
        actor=actor_for(alice),
        prompt_name="support.answer",
        template=first.template,
        model=first.model,
        config=first.config,
    )

    assert (version.version, created) == (3, True)
    assert version.content_hash == first.content_hash


@pytest.mark.django_db
def test_a_config_in_another_key_order_is_the_same_content(alice: Any) -> None:
    actor = actor_for(alice)
    make_prompt(alice, versions=0)
    version_create(actor=actor, prompt_name="support.answer", template="t", config={"a": 1, "b": 2})

    _version, created = version_create(
        actor=actor, prompt_name="support.answer", template="t", config={"b": 2, "a": 1}
    )

    assert created is False


@pytest.mark.django_db
def test_the_first_version_becomes_production_and_both_are_audited(alice: Any) -> None:
    # When a new prompt's first version is published
    make_prompt(alice, versions=1)

    # Then production points at it, and the label move is audited after the version
    assert labels_of("support.answer") == {"production": 1}
    assert actions_of("support.answer") == ["prompt.create", "version.create", "label.move"]
    move = AuditEntry.objects.get(action="label.move")
    assert move.data == {"label": "production", "from_version": None, "to_version": 1}
    assert (move.actor_name, move.via) == ("alice", "test")


@pytest.mark.django_db
def test_later_versions_leave_production_where_it_is(alice: Any) -> None:
    make_prompt(alice, versions=3)
    assert labels_of("support.answer") == {"production": 1}


@pytest.mark.django_db
def test_a_version_asking_for_production_during_a_rollout_is_refused_and_nothing_is_made(alice: Any) -> None:
    # Given a prompt with an active rollout
    prompt = make_prompt(alice, versions=2)
    v1, v2 = prompt.versions.order_by("version")
    Rollout.objects.create(prompt=prompt, baseline=v1, candidate=v2, plan=[], gates=[], state="running")
    audited = AuditEntry.objects.count()

    # When a version asks for production, then it is refused
    with pytest.raises(ProductionFrozen):
        version_create(
            actor=actor_for(alice), prompt_name="support.answer", template="new", labels=["production"]
        )

    # And nothing was created, moved or audited
    assert PromptVersion.objects.count() == 2
    assert labels_of("support.answer") == {"production": 1}
    assert AuditEntry.objects.count() == audited


@pytest.mark.django_db
def test_only_owners_publish(alice: Any, bob: Any) -> None:
    make_prompt(alice, versions=1)
    with pytest.raises(Forbidden):
        version_create(actor=actor_for(bob), prompt_name="support.answer", template="mine now")
    assert PromptVersion.objects.count() == 1


@pytest.mark.django_db
def test_versions_are_immutable_in_the_database(alice: Any) -> None:
    make_prompt(alice, versions=1)
    with pytest.raises(DatabaseError), transaction.atomic():
        PromptVersion.objects.update(template="changed")
    assert PromptVersion.objects.get().template.startswith("v1:")


# --- labels -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_moving_a_label_points_it_at_the_version_and_audits_from_and_to(alice: Any) -> None:
    make_prompt(alice, versions=3)
    actor = actor_for(alice)
    label_move(actor=actor, prompt_name="support.answer", label="staging", version=2, reason="try")

    label_move(actor=actor, prompt_name="support.answer", label="staging", version=3, reason="newer")

    assert labels_of("support.answer") == {"production": 1, "staging": 3}
    moves = AuditEntry.objects.filter(action="label.move", object_id="staging").order_by("id")
    assert [(m.data["from_version"], m.data["to_version"], m.reason) for m in moves] == [
        (None, 2, "try"),
        (2, 3, "newer"),
    ]


@pytest.mark.parametrize("name", ["latest", "Staging", "9lives", "x" * 65, "", "a b"])
@pytest.mark.django_db
def test_a_label_name_outside_the_rules_is_refused(alice: Any, name: str) -> None:
    make_prompt(alice, versions=1)
    with pytest.raises(ValidationFailed):
        label_move(actor=actor_for(alice), prompt_name="support.answer", label=name, version=1)
    assert labels_of("support.answer") == {"production": 1}


@pytest.mark.django_db
def test_a_label_cannot_point_at_a_version_that_does_not_exist(alice: Any) -> None:
    make_prompt(alice, versions=1)
    with pytest.raises(VersionNotFound):
        label_move(actor=actor_for(alice), prompt_name="support.answer", label="staging", version=2)


@pytest.mark.django_db
def test_production_moves_by_hand_only_without_an_active_rollout(alice: Any) -> None:
    prompt = make_prompt(alice, versions=3)
    actor = actor_for(alice)
    label_move(actor=actor, prompt_name="support.answer", label="production", version=2)
    v2, v3 = prompt.versions.filter(version__in=[2, 3]).order_by("version")
    Rollout.objects.create(prompt=prompt, baseline=v2, candidate=v3, plan=[], gates=[], state="paused")

    with pytest.raises(ProductionFrozen):
        label_move(actor=actor, prompt_name="support.answer", label="production", version=3)
    label_move(actor=actor, prompt_name="support.answer", label="staging", version=3)

    assert labels_of("support.answer") == {"production": 2, "staging": 3}


@pytest.mark.django_db
def test_the_controller_moves_production_during_its_rollout(alice: Any) -> None:
    prompt = make_prompt(alice, versions=2)
    v1, v2 = prompt.versions.order_by("version")
    Rollout.objects.create(prompt=prompt, baseline=v1, candidate=v2, plan=[], gates=[], state="running")

    label_move(
        actor=actor_for(alice), prompt_name="support.answer", label="production", version=2, system=True
    )

    assert labels_of("support.answer") == {"production": 2}


@pytest.mark.django_db
def test_production_cannot_be_deleted_and_other_labels_are_deleted_with_an_audit_entry(alice: Any) -> None:
    make_prompt(alice, versions=2)
    actor = actor_for(alice)
    label_move(actor=actor, prompt_name="support.answer", label="staging", version=2)

    with pytest.raises(Conflict):
        label_delete(actor=actor, prompt_name="support.answer", label="production")
    label_delete(actor=actor, prompt_name="support.answer", label="staging", reason="done")
    with pytest.raises(LabelNotFound):
        label_delete(actor=actor, prompt_name="support.answer", label="staging")

    assert labels_of("support.answer") == {"production": 1}
    deleted = AuditEntry.objects.get(action="label.delete")
    assert (deleted.reason, deleted.data) == ("done", {"label": "staging", "from_version": 2})


# --- prompts ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_creating_a_prompt_makes_its_creator_an_owner_and_audits_it(alice: Any, bob: Any) -> None:
    prompt_create(actor=actor_for(alice), name="support.answer", owners=["bob"], tags=["b", "a", "b"])

    entry = AuditEntry.objects.get(action="prompt.create")
    assert entry.data == {
        "kind": "text",
        "tags": ["a", "b"],
        "owners": ["alice", "bob"],
        "require_second_approver": False,
    }


@pytest.mark.django_db
def test_a_prompt_update_audits_what_changed_and_nothing_when_nothing_did(alice: Any) -> None:
    make_prompt(alice, versions=0)
    actor = actor_for(alice)

    prompt_update(actor=actor, prompt_name="support.answer", description="Answers customers.")
    prompt_update(actor=actor, prompt_name="support.answer", description="Answers customers.")

    updates = AuditEntry.objects.filter(action="prompt.update")
    assert [entry.data for entry in updates] == [
        {"changes": {"description": {"from": "", "to": "Answers customers."}}}
    ]
