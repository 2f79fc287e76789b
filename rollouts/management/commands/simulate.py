"""Drive synthetic traffic for a prompt through the real resolve and events endpoints, so a
rollout can be watched advancing (or rolling back) live."""

from __future__ import annotations

import heapq
import itertools
import random
import time
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from access.services import apikey_create
from core.actors import Actor
from rollouts.traffic_model import ArmBehaviour, late_score, outcome_event, shadow_run


class Command(BaseCommand):
    help = (
        "Send synthetic traffic for PROMPT: resolve for random units at --rate per second, then "
        "report an outcome for each (per-arm error rate, latency and score distributions), but "
        "for the share of calls an arm's --ARM-report-loss drops. With --shadow, an answer that "
        "carries a shadow (a shadow step's sample) also runs the candidate unseen and reports it "
        "as arm shadow, with the candidate's figures and report loss. With --late-scores, each "
        "call's score is sent as a late score after a random delay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt")
        parser.add_argument("--base-url", default=f"http://127.0.0.1:{settings.PORT}")
        parser.add_argument("--api-key", help="a key with read and ingest; default: a new one for the admin")
        parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
        parser.add_argument("--duration", type=float, default=600.0, help="seconds to run")
        parser.add_argument("--units", type=int, default=10_000, help="distinct units (users)")
        parser.add_argument("--seed", type=int, default=None)
        for arm in ("baseline", "candidate"):
            parser.add_argument(f"--{arm}-error-rate", type=float, default=0.01)
            parser.add_argument(f"--{arm}-latency-ms", type=float, default=800.0, help="median")
            parser.add_argument(f"--{arm}-score", type=float, default=0.8, help="mean score")
            parser.add_argument(f"--{arm}-cost", type=float, default=0.002, help="USD per request")
            parser.add_argument(
                f"--{arm}-report-loss",
                type=float,
                default=0.0,
                help="share of calls whose outcome is never reported (e.g. 0.3: a crash before it "
                "reports); the candidate's applies to its shadow runs too",
            )
        parser.add_argument("--latency-sigma", type=float, default=0.5)
        parser.add_argument("--score-sd", type=float, default=0.15)
        parser.add_argument(
            "--shadow",
            action="store_true",
            help="run the shadow an answer carries and report it (arm shadow), as the SDK's shadow= does",
        )
        parser.add_argument(
            "--late-scores",
            action="store_true",
            help="send scores as late events (of_event) after a delay, not in the call's event",
        )
        parser.add_argument(
            "--late-delay",
            type=float,
            default=600.0,
            help="a late score waits 0 to this many seconds (default 600); those still waiting at "
            "the end are sent then",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rate"] <= 0 or options["duration"] <= 0 or options["units"] < 1:
            raise CommandError("--rate, --duration and --units must be positive.")
        if not all(0 <= options[f"{arm}_report_loss"] <= 1 for arm in ("baseline", "candidate")):
            raise CommandError("--baseline-report-loss and --candidate-report-loss must be within 0..1.")
        if options["late_delay"] < 0:
            raise CommandError("--late-delay must be 0 or more.")
        behaviours = {
            arm: ArmBehaviour(
                error_rate=options[f"{arm}_error_rate"],
                latency_median_ms=options[f"{arm}_latency_ms"],
                latency_sigma=options["latency_sigma"],
                score_mean=options[f"{arm}_score"],
                score_sd=options["score_sd"],
                cost_usd=options[f"{arm}_cost"],
                report_loss=options[f"{arm}_report_loss"],
            )
            for arm in ("baseline", "candidate")
        }
        behaviours["production"] = behaviours["baseline"]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {options['api_key'] or self._new_key()}"
        self._run(session, options, behaviours)

    def _new_key(self) -> str:
        admin = get_user_model().objects.filter(username=settings.PROMPTRAMP_ADMIN_USER).first()
        if admin is None:
            raise CommandError("No admin user to make a key for; pass --api-key.")
        _, raw = apikey_create(
            actor=Actor(user_id=None, name="system", is_admin=True, via="command:simulate"),
            name="simulate",
            user=admin,
            scopes=["read", "ingest"],
        )
        return raw

    def _run(
        self, session: requests.Session, options: dict[str, Any], behaviours: dict[str, ArmBehaviour]
    ) -> None:
        rng = random.Random(options["seed"])
        base = options["base_url"].rstrip("/")
        resolve_url = f"{base}/api/v1/prompts/{options['prompt']}/resolve"
        interval = 1.0 / options["rate"]
        started = time.monotonic()
        next_send = started
        pending: list[dict[str, Any]] = []
        waiting: list[tuple[float, int, dict[str, Any]]] = []  # late scores: (due, order, event)
        order = itertools.count()
        counts: dict[str, int] = {}
        acknowledged: dict[str, int] = {}
        last_report = started
        while time.monotonic() - started < options["duration"]:
            unit = f"user-{rng.randrange(options['units'])}"
            response = session.get(resolve_url, params={"unit": unit}, timeout=5)
            if response.status_code != 200:
                raise CommandError(f"resolve answered {response.status_code}: {response.text[:300]}")
            resolved = response.json()
            ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            shadow = options["shadow"] and "shadow" in resolved
            behaviour = behaviours[resolved["arm"]]
            calls = []
            if behaviour.reports(rng):
                calls.append(
                    outcome_event(
                        rng=rng, behaviour=behaviour, resolved=resolved, ts=ts, shadow_sample=shadow
                    )
                )
            counts[resolved["arm"]] = counts.get(resolved["arm"], 0) + 1
            if shadow:
                if behaviours["candidate"].reports(rng):
                    run = shadow_run(resolved)
                    calls.append(
                        outcome_event(rng=rng, behaviour=behaviours["candidate"], resolved=run, ts=ts)
                    )
                counts["shadow"] = counts.get("shadow", 0) + 1
            pending += calls
            now = time.monotonic()
            if options["late_scores"]:
                for call in calls:
                    score = late_score(rng=rng, event=call)
                    if score is not None:
                        due = now + rng.uniform(0, options["late_delay"])
                        heapq.heappush(waiting, (due, next(order), score))
                while waiting and waiting[0][0] <= now:
                    pending.append(heapq.heappop(waiting)[2])
            if len(pending) >= 200 or now - last_report >= 2:
                self._send(session, base, pending, acknowledged)
                pending = []
                if now - last_report >= 2:
                    self.stdout.write(f"{now - started:6.0f}s  requests per arm: {counts}")
                    last_report = now
            next_send += interval
            time.sleep(max(0.0, next_send - time.monotonic()))
        remaining = pending + [score for _, _, score in sorted(waiting)]
        for start in range(0, len(remaining), 1000):
            self._send(session, base, remaining[start : start + 1000], acknowledged)
        self.stdout.write(
            f"done: requests per arm: {counts}; events acknowledged (202) per arm: {acknowledged}"
        )

    def _send(
        self, session: requests.Session, base: str, events: list[dict[str, Any]], acknowledged: dict[str, int]
    ) -> None:
        """POST the events; on 202 each call's arm counts in ``acknowledged`` (late scores are not
        calls)."""
        if not events:
            return
        for _attempt in range(5):
            response = session.post(f"{base}/api/v1/events", json={"events": events}, timeout=10)
            if response.status_code == 202:
                for event in events:
                    if "of_event" not in event:
                        acknowledged[event["arm"]] = acknowledged.get(event["arm"], 0) + 1
                return
            if response.status_code in (429, 503):
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            raise CommandError(f"events answered {response.status_code}: {response.text[:300]}")
        raise CommandError("events were refused five times (429/503); the server is overloaded")
