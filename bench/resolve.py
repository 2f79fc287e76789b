"""Benchmark of GET /api/v1/prompts/{name}/resolve against Unleash and nginx.

The peers run from a harness that is not part of this repository: ../shared/bench (setup.sh,
compare.sh) beside the clone, or PROMPTRAMP_SHARED_DIR/bench. Nothing else (tests, `make run`,
`make test`) reads anything outside the clone.

    .venv/bin/python bench/resolve.py                 # the full comparison (about 2 minutes)
    .venv/bin/python bench/resolve.py --serve         # only start the service and print the target
    .venv/bin/python bench/resolve.py -- --duration 5 # arguments after -- go to compare.sh

Starts the service as `make run` does (embedded PostgreSQL and Redis, gunicorn with the run
command's defaults, which WEB_CONCURRENCY / WEB_WORKER_CLASS / WEB_THREADS override), with its
data under bench/.results/data unless PROMPTRAMP_DATA_DIR says otherwise; loads a prompt with a
running 10% rollout whose two versions have ~600 B templates and a read-only API key; then runs
../shared/bench/compare.sh (setup.sh first) with a paced run at 1,000 req/s and prints its table.
Stops what it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = Path(os.environ.get("PROMPTRAMP_SHARED_DIR") or ROOT.parent / "shared") / "bench"
PROMPT = "bench.answer"
TEMPLATE = (
    "You are the support assistant of {{company}}. Answer the customer's question below in the "
    "customer's own language, in at most five sentences, with a friendly and precise tone. Use "
    "only facts from the knowledge base excerpt; when it does not hold the answer, say so and "
    "offer to open a ticket. Never invent order numbers, prices or delivery dates. Address the "
    "customer as {{customer}}. If the question is about billing, remind them that invoices are "
    "in their account settings. Version {version}: keep answers short and end with a question "
    "that moves the conversation forward.\n\nKnowledge base:\n{{context}}\n\nQuestion: {{question}}"
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", default=os.environ.get("PORT", "18080"))
    parser.add_argument("--serve", action="store_true", help="start the service, print the target, wait")
    parser.add_argument("compare_args", nargs="*", help="extra arguments for compare.sh (after --)")
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PROMPTRAMP_DATA_DIR", str(ROOT / "bench" / ".results" / "data"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from config import embedded_services, stack

    started = stack.prepare_environment()
    server: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], check=True)
        key = load_bench_data()
        stack.prepare_metrics_dir()
        command = stack.web_command("127.0.0.1", args.port)
        print("server: " + " ".join(command[1:]), flush=True)
        server = subprocess.Popen(command)
        target = f"http://127.0.0.1:{args.port}/api/v1/prompts/{PROMPT}/resolve?unit={{unit}}"
        wait_until_answering(target.replace("{unit}", "user-1"), key)
        if args.serve:
            print(f"target: {target}\nheader: Authorization: Bearer {key}\nCtrl-C stops.", flush=True)
            stop_signals = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # after the server's start
            signal.sigwait(stop_signals)
            return 0
        subprocess.run([str(SHARED_BENCH / "setup.sh")], check=True, stdout=subprocess.DEVNULL)
        compare = [str(SHARED_BENCH / "compare.sh"), "--name", "resolve", "--half-load", "--rate", "1000"]
        compare += ["--target", target, "--target-header", f"Authorization: Bearer {key}"]
        return subprocess.call(compare + args.compare_args)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        embedded_services.stop(started)


def load_bench_data() -> str:
    """The prompt, its running 10% rollout and a new read-only key (printed once, returned)."""
    import django

    django.setup()
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db import connection

    from access.actors import Actor
    from access.services import apikey_create
    from config.state_cache import state_changed
    from registry.models import Prompt
    from registry.services import prompt_create, version_create
    from registry.serving import SERVING_STATE
    from rollouts.models import Rollout

    actor = Actor.system()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    if not Prompt.objects.filter(name=PROMPT).exists():
        prompt_create(actor=actor, name=PROMPT, kind="text", owners=["bench"])
        for version in (1, 2):
            version_create(
                actor=actor,
                prompt_name=PROMPT,
                template=TEMPLATE.replace("{version}", str(version)),
                model="gpt-4o-mini",
                config={"temperature": 0.2, "max_tokens": 400},
                message=f"bench version {version}",
            )
    prompt = Prompt.objects.get(name=PROMPT)
    if not Rollout.objects.filter(prompt=prompt, state__in=Rollout.ACTIVE_STATES).exists():
        Rollout.objects.create(
            prompt=prompt,
            baseline=prompt.versions.get(version=1),
            candidate=prompt.versions.get(version=2),
            plan=[{"percent": 10, "min_duration_s": 600, "min_samples": 200}],
            gates=[],
            state=Rollout.State.RUNNING,
            percent=Decimal(10),
        )
        state_changed(SERVING_STATE)
    _, key = apikey_create(actor=actor, name="bench", user=user, scopes=["read"])
    connection.close()
    return key


def wait_until_answering(url: str, key: str) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                print(f"answering: {response.read().decode()[:120]}…", flush=True)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


if __name__ == "__main__":
    sys.exit(main())
