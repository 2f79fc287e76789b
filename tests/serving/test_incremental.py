"""A change costs each process work proportional to what changed: the serving state is updated
for the prompts a change names, and the result is exactly what a whole rebuild gives."""

from __future__ import annotations

import pytest
from django.db import transaction

from core import state_cache
from core.metrics import state_rebuilds_total
from core.redis_client import get_redis
from registry.services import label_move, prompt_create
from rollouts.models import Rollout
from serving.state import serving_cache, serving_state_build, serving_state_update
from tests.factories import actor_for, make_prompt
from tests.serving.helpers import put_rollout, set_rollout


def _same(a, b) -> None:
    assert a.snapshot_etag == b.snapshot_etag
    assert dict(a.entries) == dict(b.entries)
    assert dict(a.prompts) == dict(b.prompts)
    assert a.snapshot.split(b',"prompts":', 1)[1] == b.snapshot.split(b',"prompts":', 1)[1]


@pytest.mark.django_db
def test_updating_the_named_prompts_gives_what_a_whole_rebuild_gives(alice):
    for name in ("a.one", "b.two", "c.three"):
        make_prompt(alice, name=name, versions=2)
    before = serving_state_build()

    label_move(actor=actor_for(alice), prompt_name="b.two", label="production", version=2)
    rollout = put_rollout(alice.owned_prompts.get(name="c.three"), percent="25")
    make_prompt(alice, name="a.new", versions=1)
    prompt_create(actor=actor_for(alice), name="z.empty", owners=["alice"])
    updated = serving_state_update(before, frozenset({"b.two", "c.three", "a.new", "z.empty", "gone"}))

    _same(updated, serving_state_build())
    assert updated.prompts["a.one"] is before.prompts["a.one"]  # untouched: not read again
    assert updated.prompts["c.three"].rollout.id == rollout.pk

    set_rollout(rollout, state=Rollout.State.ROLLED_BACK)
    _same(serving_state_update(updated, frozenset({"c.three"})), serving_state_build())


def _rebuilds(outcome: str) -> float:
    return state_rebuilds_total.labels("serving", outcome)._value.get()


@pytest.mark.django_db(transaction=True)
def test_a_process_applies_a_committed_change_to_the_named_prompts_only(alice):
    make_prompt(alice, name="a.one", versions=2)
    make_prompt(alice, name="b.two", versions=1)
    serving_cache.get()
    whole, updated = _rebuilds("ok"), _rebuilds("updated")

    with transaction.atomic():
        label_move(actor=actor_for(alice), prompt_name="a.one", label="production", version=2)
    state, _stale = serving_cache.get()

    assert state.prompts["a.one"].production.version == 2
    assert (_rebuilds("ok"), _rebuilds("updated")) == (whole, updated + 1)
    _same(state, serving_state_build())


@pytest.mark.django_db(transaction=True)
def test_a_change_log_with_a_gap_or_a_change_of_everything_means_a_whole_rebuild(alice):
    make_prompt(alice, name="a.one", versions=2)
    serving_cache.get()
    whole = _rebuilds("ok")

    state_cache.state_changed("serving")  # everything
    serving_cache.get()
    assert _rebuilds("ok") == whole + 1

    # A generation the log does not hold (e.g. trimmed, or Redis restored from a backup)
    get_redis().incr(state_cache.generation_key("serving"))
    state_cache.state_changed("serving", ["a.one"])
    serving_cache.get()
    assert _rebuilds("ok") == whole + 2
