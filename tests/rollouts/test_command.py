"""`manage.py rollouts tick`: one controller tick, printing each decision."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from rollouts.models import Rollout
from rollouts.services import rollout_create
from tests.factories import actor_for, make_prompt


@pytest.mark.django_db
def test_tick_evaluates_every_running_rollout_and_prints_each_decision(alice):
    make_prompt(alice, name="a", versions=2)
    make_prompt(alice, name="b", versions=2)
    plan = [{"percent": 100, "min_duration_s": 0, "min_samples": 0}]
    done = rollout_create(actor=actor_for(alice), prompt_name="a", candidate_version=2, plan=plan, gates=[])
    waiting = rollout_create(actor=actor_for(alice), prompt_name="b", candidate_version=2)
    output = StringIO()
    call_command("rollouts", "tick", stdout=output)
    lines = output.getvalue().splitlines()
    assert f"rollout {done.pk}: succeed — succeeded at 100%" in "\n".join(lines)
    held = next(
        i for i, line in enumerate(lines) if line.startswith(f"rollout {waiting.pk}: hold — holding at 10%")
    )
    assert lines[held + 1].startswith(
        "  verdicts: latency_p95_ms insufficient_data, error_rate insufficient_data"
    )
    assert lines[held + 1].endswith(", traffic insufficient_data")
    assert lines[-1] == "2 rollouts evaluated"
    assert Rollout.objects.get(pk=done.pk).state == "succeeded"
