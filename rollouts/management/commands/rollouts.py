"""`manage.py rollouts tick`: one controller tick, here and now, printing each decision.

Rollouts are evaluated in chunks of CHUNK, each chunk one transaction (as `rollout_evaluate_many`
does), so a tick over many rollouts costs few round trips to PostgreSQL."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from rollouts.controller import rollout_evaluate_many
from rollouts.selectors import rollout_ids_to_evaluate
from rollouts.tasks import TICK_BATCH
from rollouts.webhooks import verdicts_text

CHUNK = 100


class Command(BaseCommand):
    help = "Rollout controller commands. `tick` evaluates every running rollout once."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("tick", help="evaluate every running rollout once and print the decisions")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = rollout_ids_to_evaluate(limit=TICK_BATCH)
        evaluated = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            decisions = rollout_evaluate_many(rollout_ids=chunk)
            for rollout_id in chunk:
                decision = decisions.get(rollout_id)
                if decision is None:
                    self.stdout.write(
                        f"rollout {rollout_id}: skipped (no longer running, or being evaluated)"
                    )
                    continue
                evaluated += 1
                self.stdout.write(f"rollout {rollout_id}: {decision.action} — {decision.reason}")
                if decision.verdicts:
                    verdicts = verdicts_text([verdict.to_json() for verdict in decision.verdicts])
                    self.stdout.write(f"  verdicts: {verdicts}")
        self.stdout.write(f"{evaluated} rollouts evaluated")
