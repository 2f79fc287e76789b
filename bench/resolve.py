"""Benchmark of GET /api/v1/prompts/{name}/resolve against Unleash and nginx, for one or more
web servers, in one run.

The peers run from a harness that is not part of this repository: ../shared/bench (setup.sh,
compare.sh) beside the clone, or PROMPTRAMP_SHARED_DIR/bench. Nothing else (tests, `make run`,
`make test`) reads anything outside the clone.

    .venv/bin/python bench/resolve.py --servers gunicorn,granian --runs 3   # the comparison (~12 min)
    .venv/bin/python bench/resolve.py                 # the run command's server, once (~2 minutes)
    .venv/bin/python bench/resolve.py --serve [--servers gunicorn]   # start it, print the target, wait
    .venv/bin/python bench/resolve.py -- --duration 5 # arguments after -- go to compare.sh
    .venv/bin/python bench/resolve.py --rate-limits   # each server with rate limits off, then on
    .venv/bin/python bench/resolve.py --overrides 1000   # the prompt has 1,000 overrides (none of
                                                      # the timed units'), every resolve 5 attributes
    .venv/bin/python bench/resolve.py --servers granian,bare   # and the machine's ceiling: granian
                                                      # with an application that does no work

Starts the service as `make run` does (embedded PostgreSQL and Redis, `devstack.stack.web_command`
with WEB_SERVER set to each server in turn; WEB_CONCURRENCY / WEB_THREADS apply to all), with its
data under bench/.results/data unless PROMPTRAMP_DATA_DIR says otherwise; loads a prompt with a
running 10% rollout whose two versions have ~600 B templates and a read-only API key; starts the
peers once (../shared/bench/peers.sh, run folder bench/.results/peers unless PERF_RUN_DIR says
otherwise); then for each run, for each server: starts the server, runs
../shared/bench/compare.sh with a paced run at 1,000 req/s, prints its table and how the
connections and the CPU were spread over the server's worker processes during each wrk run,
stops the server. At the end, per server, the worst of the runs: resolve / Unleash,
resolve / nginx, p99 at a paced 1,000 req/s, and the most CPU the rest of the machine used.
Stops what it started.

The server ``bare`` is granian as the run command starts it, running ``bench/bare_app.py``: an
application that answers every request with a body of the size of the service's answer and the
same headers, prepared at start, and does nothing else (compare.sh's "body B" column shows both
sizes). Its row says how many requests per second the web server alone leaves room for on
this machine in this run; resolve / bare is the share of that the application keeps.

The server runs with the rate limits on, PROMPTRAMP_RATE_SERVE set above any load this machine
can offer (ABOVE_THE_LOAD), as a service with every feature on would; with --rate-limits each
server is measured with them off (PROMPTRAMP_RATE_SERVE=0) and then on, in the same run, and the
summary gives what the limits cost (resolve's req/s on / off) and the answers that were not 2xx
in the runs with limits on (a 429 would mean the limit was not above the load).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages

from bench.service import wait_until_answering  # noqa: E402

SHARED_BENCH = Path(os.environ.get("PROMPTRAMP_SHARED_DIR") or ROOT.parent / "shared") / "bench"
PEERS_RUN_DIR = ROOT / "bench" / ".results" / "peers"
PROMPT = "bench.answer"
ABOVE_THE_LOAD = "10000000"  # PROMPTRAMP_RATE_SERVE: req/s per key, far above what wrk offers here
LIMITS_ON = "+limits"  # the suffix of a server measured with limits on, beside it with limits off
BARE = "bare"  # granian running bench/bare_app.py: the web server's ceiling
# With --overrides: five attributes, none of which an override matches (each is looked up).
ATTRIBUTES_QUERY = "&attr.tenant=tenant-none&attr.plan=pro&attr.region=eu&attr.device=web&attr.locale=de"
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
    parser.add_argument(
        "--servers",
        default=os.environ.get("WEB_SERVER", "granian"),
        help="web servers to compare, comma-separated (granian, gunicorn, bare)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs back to back, each of every server")
    parser.add_argument("--serve", action="store_true", help="start the service, print the target, wait")
    parser.add_argument(
        "--rate-limits", action="store_true", help="measure each server with rate limits off, then on"
    )
    parser.add_argument(
        "--overrides", type=int, default=0, help="overrides on the prompt; resolves then give 5 attributes"
    )
    parser.add_argument("compare_args", nargs="*", help="extra arguments for compare.sh (after --)")
    args = parser.parse_args()
    servers = args.servers.split(",")
    if args.rate_limits:
        servers = [name for server in servers for name in (server, server + LIMITS_ON)]
    os.chdir(ROOT)
    os.environ.setdefault("PROMPTRAMP_DATA_DIR", str(ROOT / "bench" / ".results" / "data"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("PERF_RUN_DIR", str(PEERS_RUN_DIR))
    from devstack import embedded_services, stack

    started = stack.prepare_environment()
    peers_started = False
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], check=True)
        key = load_bench_data(overrides=args.overrides)
        target = f"http://127.0.0.1:{args.port}/api/v1/prompts/{PROMPT}/resolve?unit={{unit}}"
        if args.overrides:
            target += ATTRIBUTES_QUERY
        if args.serve:
            return serve(servers[0], args.port, target, key)
        subprocess.run([str(SHARED_BENCH / "setup.sh")], check=True, stdout=subprocess.DEVNULL)
        peers_started = start_peers()
        results: dict[str, list[Run]] = {server: [] for server in servers}
        for number in range(1, args.runs + 1):
            for server in servers:
                print(f"\n=== run {number} of {args.runs}: {server} ===", flush=True)
                results[server].append(
                    measure(server, args.port, target, key, args.compare_args, compared=args.rate_limits)
                )
        print_summary(results)
        if args.rate_limits:
            print_limits_cost(results)
        return 0
    finally:
        if peers_started:
            subprocess.run([str(SHARED_BENCH / "peers.sh"), "stop"], check=False)
        embedded_services.stop(started)


@dataclass
class Run:
    rows: dict[str, dict[str, Any]]  # compare.sh's results by endpoint name
    stop_seconds: float


def measure(server: str, port: str, target: str, key: str, compare_args: list[str], *, compared: bool) -> Run:
    process = start_server(server, port, target, key, compared=compared)
    spread = WorkerSpread(process.pid, int(port))
    spread.start()
    try:
        compare = [str(SHARED_BENCH / "compare.sh"), "--name", "resolve", "--half-load", "--rate", "1000"]
        compare += ["--target", target, "--target-header", f"Authorization: Bearer {key}"]
        code = subprocess.call(compare + compare_args)
        if code != 0:
            raise SystemExit(f"compare.sh exited with {code}")
    finally:
        spread.stop()
        stop_seconds = stop_server(process)
    spread.report()
    print(f"{server} stopped {stop_seconds:.2f} s after SIGTERM", flush=True)
    results = sorted((Path(os.environ["PERF_RUN_DIR"]) / "results").iterdir())[-1] / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    return Run({str(row["name"]): row for row in rows}, stop_seconds)


def serve(server: str, port: str, target: str, key: str) -> int:
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    process = start_server(server, port, target, key)
    print(f"target: {target}\nheader: Authorization: Bearer {key}\nCtrl-C stops.", flush=True)
    while not stopping.wait(0.5):
        if process.poll() is not None:
            return process.returncode or 1
    print(f"{server} stopped {stop_server(process):.2f} s after SIGTERM", flush=True)
    return 0


def start_server(
    server: str, port: str, target: str, key: str, *, compared: bool = False
) -> subprocess.Popen[bytes]:
    """``server`` is a web server's name; when rate limits are ``compared``, they are off, and on
    for the name with LIMITS_ON appended."""
    from devstack import stack

    stack.prepare_metrics_dir()
    name = server.removesuffix(LIMITS_ON)
    limit = ABOVE_THE_LOAD if server.endswith(LIMITS_ON) or not compared else "0"
    env = {**os.environ, "WEB_SERVER": name, "PROMPTRAMP_RATE_SERVE": limit}
    if name == BARE:
        env["WEB_SERVER"] = "granian"
    command = stack.web_command("127.0.0.1", port, env)
    if name == BARE:
        command[command.index("config.wsgi:application")] = "bench.bare_app:application"
    print(f"server (PROMPTRAMP_RATE_SERVE={limit}): " + " ".join(command[1:]), flush=True)
    process = subprocess.Popen(command, env=env)
    answer = wait_until_answering(target.replace("{unit}", "user-1"), key)
    print(f"answering: {answer.decode()[:120]}…", flush=True)
    return process


def stop_server(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM, as the run command stops it; returns the seconds until the server and all its
    workers were gone. After 30 s what is left is killed, by PID."""
    main = psutil.Process(process.pid)
    workers = main.children(recursive=True)
    began = time.monotonic()
    process.terminate()
    try:
        process.wait(timeout=30)
        psutil.wait_procs(workers, timeout=max(0.1, 30 - (time.monotonic() - began)))
    except subprocess.TimeoutExpired:
        pass
    stopped = time.monotonic() - began
    for leftover in [main, *workers]:
        if leftover.is_running():
            print(f"killing {leftover.pid}: still running {stopped:.0f} s after SIGTERM", flush=True)
            leftover.kill()
    process.wait()
    return stopped


class WorkerSpread(threading.Thread):
    """Every 0.5 s, each worker process of the server: how many established connections on the
    port it holds, and its CPU time. A wrk run is a stretch of samples with the same client
    connections (wrk opens new ones at each start)."""

    def __init__(self, server_pid: int, port: int) -> None:
        super().__init__(daemon=True)
        self.server = psutil.Process(server_pid)
        self.port = port
        self.stopping = threading.Event()
        self.stretches: list[Stretch] = []

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                self.sample()
            except psutil.Error:
                return  # the server is stopping

    def sample(self) -> None:
        now = time.monotonic()
        clients: set[int] = set()
        connections: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for worker in self.server.children(recursive=True):
            ports = {
                conn.raddr.port
                for conn in worker.net_connections("tcp")
                if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == self.port and conn.raddr
            }
            times = worker.cpu_times()
            clients |= ports
            connections[worker.pid] = len(ports)
            cpu[worker.pid] = times.user + times.system
        if not clients:
            return
        current = self.stretches[-1] if self.stretches else None
        if current is None or not clients & current.clients or now - current.last > 2:
            current = Stretch(first=now, cpu_first=cpu)
            self.stretches.append(current)
        current.add(now, clients, connections, cpu)

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def report(self) -> None:
        print("connections and CPU per worker during each wrk run against the server:")
        for stretch in self.stretches:
            if stretch.last - stretch.first >= 2:
                print("  " + stretch.describe())


@dataclass
class Stretch:
    first: float
    cpu_first: dict[int, float]
    last: float = 0.0
    clients: set[int] = field(default_factory=set)
    samples: int = 0
    connections: dict[int, int] = field(default_factory=dict)  # summed over the samples
    cpu_last: dict[int, float] = field(default_factory=dict)

    def add(self, now: float, clients: set[int], connections: dict[int, int], cpu: dict[int, float]) -> None:
        self.last, self.clients, self.cpu_last = now, clients, cpu
        self.samples += 1
        for pid, count in connections.items():
            self.connections[pid] = self.connections.get(pid, 0) + count

    def describe(self) -> str:
        seconds = self.last - self.first
        parts = []
        for pid in sorted(self.connections):
            used = self.cpu_last.get(pid, 0.0) - self.cpu_first.get(pid, 0.0)
            share = self.connections[pid] / self.samples
            parts.append(f"pid {pid}: {share:4.1f} conn {100 * used / seconds:4.0f}% CPU")
        return f"{seconds:4.1f} s, {len(self.clients)} connections: " + ", ".join(parts)


def print_summary(results: dict[str, list[Run]]) -> None:
    print("\nworst of the runs, per server (every run in brackets):")
    header = ("server", "resolve/Unleash", "resolve/nginx", "p99 @1,000/s (Unleash)", "rest max", "stop")
    lines = [header]
    for server, runs in results.items():
        unleash = [run.rows["resolve"]["rps"] / run.rows["unleash"]["rps"] for run in runs]
        nginx = [run.rows["resolve"]["rps"] / run.rows["nginx"]["rps"] for run in runs]
        p99 = [float(run.rows["resolve@rate"]["p99_ms"]) for run in runs]
        p99_unleash = [float(run.rows["unleash@rate"]["p99_ms"]) for run in runs]
        rest = [max(int(row["other_cpu_pct"]) for row in run.rows.values()) for run in runs]
        lines.append(
            (
                server,
                f"{min(unleash):.2f}x ({' '.join(f'{value:.2f}' for value in unleash)})",
                f"{min(nginx):.3f} ({' '.join(f'{value:.3f}' for value in nginx)})",
                f"{max(p99):.1f} ms ({' '.join(f'{value:.1f}' for value in p99)}; "
                f"Unleash {' '.join(f'{value:.0f}' for value in p99_unleash)})",
                f"{max(rest)}% ({' '.join(f'{value}%' for value in rest)})",
                f"{max(run.stop_seconds for run in runs):.1f} s",
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    print("rest: CPU of everything but the server and wrk, % of one core; over 15% the figures are disturbed")
    bare = results.get(BARE)
    for server, runs in results.items():
        if bare and server != BARE:
            shares = [
                run.rows["resolve"]["rps"] / of.rows["resolve"]["rps"]
                for run, of in zip(runs, bare, strict=True)
            ]
            print(
                f"{server} / bare, run by run (the share of the web server's ceiling the service keeps): "
                + " ".join(f"{share:.3f}" for share in shares)
            )


def print_limits_cost(results: dict[str, list[Run]]) -> None:
    """Per server: resolve's req/s with rate limits on / off, run by run, and the answers that
    were not 2xx with limits on."""
    print("\nrate limits (PROMPTRAMP_RATE_SERVE above the load) on / off, resolve req/s:")
    for server, runs in results.items():
        if server.endswith(LIMITS_ON):
            continue
        pairs = zip(runs, results[server + LIMITS_ON], strict=True)
        ratios = [on.rows["resolve"]["rps"] / off.rows["resolve"]["rps"] for off, on in pairs]
        refused = sum(
            row["errors"]["status"]
            for run in results[server + LIMITS_ON]
            for name, row in run.rows.items()
            if name.startswith("resolve")
        )
        print(
            f"  {server}: worst {min(ratios):.3f} ({' '.join(f'{value:.3f}' for value in ratios)}); "
            f"answers other than 2xx with limits on: {refused}"
        )


def start_peers() -> bool:
    """Start Unleash, its PostgreSQL and nginx once for all the runs; True when this call
    started them (and so must stop them)."""
    peers = str(SHARED_BENCH / "peers.sh")
    Path(os.environ["PERF_RUN_DIR"]).mkdir(parents=True, exist_ok=True)
    if subprocess.run([peers, "status"], capture_output=True, check=False).returncode == 0:
        return False
    subprocess.run([peers, "start"], check=True, stdout=subprocess.DEVNULL)
    return True


def load_bench_data(*, overrides: int = 0) -> str:
    """The prompt, its running 10% rollout, exactly ``overrides`` overrides (half by unit, half
    by tenant, none matching the timed requests) and a new read-only key (printed once,
    returned)."""
    import django

    django.setup()
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.db import connection

    from access.services import apikey_create
    from core.actors import Actor
    from core.state_cache import SERVING_STATE, state_changed
    from registry.models import Prompt
    from registry.services import prompt_create, version_create
    from rollouts.models import Rollout
    from serving.models import Override

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
    Override.objects.filter(prompt=prompt).delete()
    candidate = prompt.versions.get(version=2)
    Override.objects.bulk_create(
        Override(prompt=prompt, unit=f"qa-{number}", version=candidate)
        if number % 2
        else Override(prompt=prompt, attribute="tenant", value=f"tenant-{number}", arm=Override.Arm.CANDIDATE)
        for number in range(overrides)
    )
    state_changed(SERVING_STATE)
    _, key = apikey_create(actor=actor, name="bench", user=user, scopes=["read"])
    with connection.cursor() as cursor:  # now, rather than autovacuum during the first run
        cursor.execute(f"VACUUM (ANALYZE) {Override._meta.db_table}")
    connection.close()
    return key


if __name__ == "__main__":
    sys.exit(main())
