"""Serving at scale: 10,000 prompts, 1,000 running rollouts and 1,000 overrides, while things
change.

    .venv/bin/python bench/scale.py                    # about 2 minutes after the first load
    .venv/bin/python bench/scale.py --prompts 2000 --rollouts 200 --duration 5

Starts embedded PostgreSQL and Redis as `make run` does (data under bench/.results/scale-data,
kept between runs: loading 10,000 prompts takes about a minute the first time), and prints:

1. the work one process does per change: a whole rebuild of the serving state, the update of
   one changed prompt (what each process does when a change names its prompts), and that of
   the prompt holding the overrides (all on the prompt resolve is timed on: half by unit, half
   by tenant, none of them the timed units', whose requests give five attributes);
2. resolve's req/s (closed loop) and p99 at a paced 1,000 req/s from the web server as the run
   command starts it, while every second a production label moves (through the API) and a
   running rollout advances a step (``rollout_promote``, as the controller's advance does);
3. how the web processes took those changes in (updates of the named prompts vs whole rebuilds,
   from /metrics).

The load generator is wrk, driven by the shared peer harness's measure.py (../shared/bench, for
us, not for users; setup.sh installs wrk).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages

from bench.service import wait_until_answering  # noqa: E402

SHARED_BENCH = ROOT.parent / "shared" / "bench"
# Five attributes on every timed resolve, none of which an override matches (each is looked up).
ATTRIBUTES_QUERY = "&attr.tenant=tenant-none&attr.plan=pro&attr.region=eu&attr.device=web&attr.locale=de"
SENTENCE = "Answer {{question}} for {{customer}} in the voice of version %(version)d of %(name)s. "
TEMPLATE = SENTENCE * 8


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--rollouts", type=int, default=1_000)
    parser.add_argument("--overrides", type=int, default=1_000, help="on the first prompt")
    parser.add_argument("--duration", type=int, default=15, help="seconds of each wrk run")
    parser.add_argument("--port", default="18180")
    args = parser.parse_args()
    os.chdir(ROOT)
    os.environ.setdefault("PROMPTRAMP_DATA_DIR", str(ROOT / "bench" / ".results" / "scale-data"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("WEB_CONCURRENCY", "2")
    os.environ.setdefault("PROMPTRAMP_RATE_SERVE", "10000000")  # rate limits on, above any load here
    from devstack import embedded_services, stack

    started = stack.prepare_environment()
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], check=True)
        import django

        django.setup()
        load(args.prompts, args.rollouts, args.overrides)
        per_change_cost()
        key, writer = keys()
        stack.prepare_metrics_dir()
        server = subprocess.Popen(stack.web_command("127.0.0.1", args.port), stdout=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{args.port}"
        target = base + "/api/v1/prompts/scale.p00000/resolve?unit={unit}" + ATTRIBUTES_QUERY
        wait_until_answering(target.replace("{unit}", "u"), key)
        churn = Churn(base, writer, args.prompts, args.rollouts)
        churn.start()
        peak = measure("resolve", target, key, duration=args.duration)
        paced = measure("resolve@1000", target, key, duration=args.duration, rate=1000)
        churn.stop()
        print(
            f"resolve during churn: {peak['rps']:,.0f} req/s (p99 {peak['p99_ms']:.1f} ms, errors "
            f"{peak['error_pct']}%, other CPU {peak['other_cpu_pct']:.0f}%); paced 1,000 req/s: p99 "
            f"{paced['p99_ms']:.1f} ms (errors {paced['error_pct']}%); "
            f"{churn.label_moves} label moves and {churn.advances} rollout advances in "
            f"{churn.seconds:.0f} s ({churn.failures} failed)"
        )
        print("web processes took the changes in: " + rebuild_counts(base))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        embedded_services.stop(started)


def load(prompts: int, rollouts: int, overrides: int) -> None:
    """Prompts scale.p00000… with two versions each, production on version 1, a running 10%
    rollout of version 2 on the first ``rollouts`` of them, and exactly ``overrides`` overrides
    on the first (bulk inserts: fast)."""
    from decimal import Decimal

    from django.db import transaction

    from core.state_cache import SERVING_STATE, state_changed
    from registry.content import content_hash
    from registry.models import PRODUCTION, Label, Prompt, PromptVersion
    from rollouts.models import Rollout
    from serving.models import Override

    names = [f"scale.p{i:05d}" for i in range(prompts)]
    have = set(Prompt.objects.filter(name__in=names).values_list("name", flat=True))
    started = time.perf_counter()
    plan = [
        {"percent": p, "min_duration_s": 0, "min_samples": 0, "max_duration_s": 86400, "approval": "auto"}
        for p in (10, 25, 50, 100)
    ]
    with transaction.atomic():  # versions are append-only: what exists is kept, what is missing added
        made = Prompt.objects.bulk_create(
            [Prompt(name=name, kind="text", latest_version=2) for name in names if name not in have]
        )
        versions = []
        for prompt in made:
            for number in (1, 2):
                template = TEMPLATE % {"version": number, "name": prompt.name}
                versions.append(
                    PromptVersion(
                        prompt=prompt,
                        version=number,
                        template=template,
                        model="gpt-4o-mini",
                        config={"temperature": 0.2},
                        variables=["customer", "question"],
                        content_hash=content_hash(
                            kind="text",
                            template=template,
                            messages=None,
                            model="gpt-4o-mini",
                            config={"temperature": 0.2},
                        ),
                    )
                )
        PromptVersion.objects.bulk_create(versions, batch_size=2000)
        Label.objects.bulk_create(
            [Label(prompt=v.prompt, name=PRODUCTION, version=v) for v in versions if v.version == 1],
            batch_size=2000,
        )
        active = set(
            Rollout.objects.filter(state__in=Rollout.ACTIVE_STATES).values_list("prompt__name", flat=True)
        )
        wanted = [name for name in names[:rollouts] if name not in active]
        missing = rollouts - len(active & set(names[:rollouts]))
        by_name = {
            (v.prompt.name, v.version): v
            for v in PromptVersion.objects.filter(prompt__name__in=wanted).select_related("prompt")
        }
        Rollout.objects.bulk_create(
            [
                Rollout(
                    prompt=by_name[(name, 1)].prompt,
                    baseline=by_name[(name, 1)],
                    candidate=by_name[(name, 2)],
                    plan=plan,
                    gates=[],
                    state=Rollout.State.RUNNING,
                    percent=Decimal(10),
                )
                for name in wanted[:missing]
            ],
            batch_size=2000,
        )
        first = Prompt.objects.get(name=names[0])
        Override.objects.filter(prompt=first).delete()
        Override.objects.bulk_create(
            Override(prompt=first, unit=f"qa-{n}", arm=Override.Arm.CANDIDATE)
            if n % 2
            else Override(
                prompt=first, attribute="tenant", value=f"tenant-{n}", version=first.versions.get(version=2)
            )
            for n in range(overrides)
        )
        state_changed(SERVING_STATE)
    took = time.perf_counter() - started
    what = f"{prompts:,} prompts, {rollouts:,} running rollouts and {overrides:,} overrides"
    print(f"loaded {what} in {took:.1f} s")


def per_change_cost() -> None:
    from django.db import connection

    from serving.state import serving_state_build, serving_state_update

    state = serving_state_build()
    whole = timed(serving_state_build, 5)
    names = itertools.cycle(sorted(state.prompts)[1::50])
    one = timed(lambda: serving_state_update(state, frozenset({next(names)})), 50)
    first = min(state.prompts)
    overridden = timed(lambda: serving_state_update(state, frozenset({first})), 20)
    size = f"{len(state.prompts):,} prompts, snapshot {len(state.snapshot) / 1e6:.1f} MB"
    print(
        f"per change, per process ({size}): "
        f"update of one changed prompt {statistics.median(one) * 1000:.1f} ms median "
        f"(max {max(one) * 1000:.1f}), of the prompt with the overrides "
        f"{statistics.median(overridden) * 1000:.1f} ms median; "
        f"whole rebuild {statistics.median(whole) * 1000:.0f} ms median"
    )
    connection.close()


def timed(function: object, times: int) -> list[float]:
    took = []
    for _ in range(times):
        started = time.perf_counter()
        function()  # type: ignore[operator]
        took.append(time.perf_counter() - started)
    return took


def keys() -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    from access.services import apikey_create
    from core.actors import Actor

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    if not user.is_superuser:
        user.is_superuser = True
        user.save()
    _, read = apikey_create(actor=Actor.system(), name="scale-read", user=user, scopes=["read"])
    _, admin = apikey_create(actor=Actor.system(), name="scale-admin", user=user, scopes=["admin"])
    return read, admin


class Churn:
    """Every second: a production label moved through the API (a prompt without a rollout,
    between its two versions) and a running rollout advanced one step in this process."""

    def __init__(self, base: str, key: str, prompts: int, rollouts: int) -> None:
        self.base, self.key, self.prompts, self.rollouts = base, key, prompts, rollouts
        self.label_moves = self.advances = self.failures = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.monotonic() - self._started

    def _run(self) -> None:
        from django.db import connection

        from core.actors import Actor
        from rollouts.models import Rollout
        from rollouts.services import rollout_promote

        tick = 0
        while not self._stop.wait(1.0):
            tick += 1
            name = f"scale.p{self.rollouts + tick % (self.prompts - self.rollouts):05d}"
            body = json.dumps({"version": 1 + tick % 2, "reason": "scale bench"}).encode()
            request = urllib.request.Request(
                f"{self.base}/api/v1/prompts/{name}/labels/production",
                data=body,
                method="PUT",
                headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10):
                    self.label_moves += 1
            except OSError:
                self.failures += 1
            running = Rollout.objects.filter(state=Rollout.State.RUNNING).order_by("?")
            rollout_id = running.values_list("pk", flat=True).first()
            if rollout_id is not None:
                rollout_promote(actor=Actor.system(), rollout_id=rollout_id, reason="scale bench")
                self.advances += 1
        connection.close()


def measure(name: str, target: str, key: str, *, duration: int, rate: int | None = None) -> dict[str, float]:
    command = [sys.executable, str(SHARED_BENCH / "measure.py"), name, target]
    command += ["-H", f"Authorization: Bearer {key}"]
    command += ["--duration", str(duration), "--warmup", "3"]
    if rate:
        command += ["--rate", str(rate)]
    line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    figures = json.loads(line)
    return {key: float(figures[key]) for key in ("rps", "p99_ms", "error_pct", "other_cpu_pct")}


def rebuild_counts(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("promptramp_state_cache_rebuilds_total{") and 'state="serving"' in line:
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            counts[outcome] = counts.get(outcome, 0) + float(line.rsplit(" ", 1)[1])
    return ", ".join(f"{outcome} {count:.0f}" for outcome, count in sorted(counts.items()))


if __name__ == "__main__":
    sys.exit(main())
