"""Overrides added at the same moment, each on its own connection: the prompt's row lock makes
the one-per-match rule and the limit of 1,000 hold between them."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from core.errors import DomainError
from serving.models import Override
from serving.selectors import MAX_OVERRIDES
from serving.services import override_create
from tests.factories import actor_for, make_prompt


def at_once(calls):
    barrier = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            outcomes[index] = call()
        except DomainError as error:
            outcomes[index] = error.code
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_of_eight_overrides_of_one_match_added_at_once_one_is_made(alice):
    make_prompt(alice, versions=2)
    actor = actor_for(alice)

    outcomes = at_once(
        [
            lambda: override_create(
                actor=actor, prompt_name="support.answer", match={"unit": "qa-7"}, version=2
            )
            for _ in range(8)
        ]
    )

    assert sorted(o if isinstance(o, str) else "made" for o in outcomes) == ["made"] + ["override_exists"] * 7
    assert Override.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_overrides_added_at_once_stop_at_the_limit(alice):
    prompt = make_prompt(alice)
    Override.objects.bulk_create(
        Override(prompt=prompt, unit=f"u{n}", version=prompt.versions.get()) for n in range(MAX_OVERRIDES - 3)
    )
    actor = actor_for(alice)

    outcomes = at_once(
        [
            lambda n=n: override_create(
                actor=actor, prompt_name="support.answer", match={"unit": f"new-{n}"}, version=1
            )
            for n in range(8)
        ]
    )

    assert (
        sorted(o if isinstance(o, str) else "made" for o in outcomes)
        == ["made"] * 3 + ["too_many_overrides"] * 5
    )
    assert Override.objects.count() == MAX_OVERRIDES
