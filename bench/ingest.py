"""Ingest benchmark: outcome events per second through POST /api/v1/events, none lost.

    .venv/bin/python bench/ingest.py                  # 60 s, batches of 500, 2 x 4 clients
    .venv/bin/python bench/ingest.py --duration 10    # a short trial

It starts the service as `make run` does (embedded PostgreSQL and Redis unless DATABASE_URL /
REDIS_URL are set; the run command's web server, `devstack.stack.web_command`, so WEB_SERVER,
WEB_CONCURRENCY and WEB_THREADS apply; a Celery worker and beat,
so the flush runs during the load as it would in production), creates a prompt with a running
rollout, and sends batches shaped like SPEC's example (both arms, lognormal latency, 1% errors,
cost, tokens, a score) from --processes x --threads keep-alive connections on this machine.
Every batch carries fresh event ids. At the end it runs the flush until nothing is pending and
checks that the rollout's arms hold exactly the events answered 202.

Prints events/s, batch latency p50/p99, the answers by status and the check.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "bench.ingest"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--batch", type=int, default=500, help="events per request (default 500)")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="connections per process (default 4)")
    parser.add_argument("--no-celery", action="store_true", help="no worker/beat during the load")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from devstack import stack

    started = stack.prepare_environment()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], check=True)
        import django

        django.setup()
        key, rollout_id = _prepare()
        before = _arm_samples(rollout_id)
        port = _free_port()
        processes = _start_service(port, celery=not args.no_celery)
        _wait_ready(port)
        print(
            f"machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}\n"
            f"service: {' '.join(stack.web_command('127.0.0.1', str(port))[1:])}"
            f"{'' if args.no_celery else ' + celery worker and beat'} on 127.0.0.1:{port}\n"
            f"load: {args.processes} processes x {args.threads} connections, batches of {args.batch}, "
            f"{args.duration:.0f} s",
            flush=True,
        )
        groups = _process_groups(processes)
        cpu_before, machine_before = _cpu_seconds(groups), _machine_busy_seconds()
        results = _run_load(port, key, rollout_id, args)
        cpu = {name: _cpu_seconds(groups)[name] - cpu_before[name] for name in groups}
        cpu["load generator"] = sum(r["cpu"] for r in results)
        cpu["other programs"] = _machine_busy_seconds() - machine_before - sum(cpu.values())
        _report(results, args)
        print(
            "CPU during the load, % of one core (the machine has "
            f"{os.cpu_count()}): "
            + ", ".join(f"{name} {seconds / args.duration * 100:.0f}%" for name, seconds in cpu.items()),
            flush=True,
        )
        _stop(processes)
        processes = []
        return _check(rollout_id, before, sum(r["accepted"] for r in results))
    finally:
        _stop(processes)
        from devstack import embedded_services

        embedded_services.stop(started)


def _prepare() -> tuple[str, int]:
    """A prompt with versions 1 and 2, a running rollout of v2, and an ingest key."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from access.services import apikey_create
    from core.actors import Actor
    from registry.models import Prompt
    from registry.services import prompt_create, version_create
    from rollouts.models import Rollout

    user, _ = get_user_model().objects.get_or_create(username="bench")
    actor = Actor(user_id=user.pk, name="bench", via="command")
    if not Prompt.objects.filter(name=PROMPT).exists():
        prompt_create(actor=actor, name=PROMPT, kind="text", owners=["bench"])
        for n in (1, 2):
            version_create(
                actor=actor, prompt_name=PROMPT, template=f"v{n}: answer {{{{question}}}}", model="m"
            )
    prompt = Prompt.objects.get(name=PROMPT)
    rollout = Rollout.objects.filter(prompt=prompt, state__in=Rollout.ACTIVE_STATES).first()
    if rollout is None:
        versions = {v.version: v for v in prompt.versions.all()}
        rollout = Rollout.objects.create(
            prompt=prompt,
            baseline=versions[1],
            candidate=versions[2],
            plan=[{"percent": 50, "min_duration_s": 600, "min_samples": 200}],
            gates=[],
            state=Rollout.State.RUNNING,
            percent=50,
            started_at=timezone.now(),
            step_started_at=timezone.now(),
        )
    _, raw = apikey_create(actor=Actor.system(), name="bench-ingest", user=user, scopes=["ingest"])
    return raw, rollout.pk


def _arm_samples(rollout_id: int) -> int:
    from outcomes.selectors import arm_stats

    return sum(stats.samples for stats in arm_stats(rollout_id=rollout_id).values())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_service(port: int, *, celery: bool) -> list[subprocess.Popen[bytes]]:
    from devstack import embedded_services, stack

    stack.prepare_metrics_dir()
    commands = [stack.web_command("127.0.0.1", str(port))]
    if celery:
        schedule = embedded_services.data_dir() / "bench-celerybeat-schedule"
        commands += [
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "WARNING"]
            + ["--concurrency", "2"],
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"]
            + ["--schedule", str(schedule)],
        ]
    return [subprocess.Popen(command) for command in commands]


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _process_groups(processes: list[subprocess.Popen[bytes]]) -> dict[str, list[psutil.Process]]:
    """The processes whose CPU is reported: the service's, Redis and PostgreSQL."""
    from devstack import embedded_services

    groups: dict[str, list[psutil.Process]] = {}
    for name, popen in zip(("web", "celery worker", "celery beat"), processes, strict=False):
        parent = psutil.Process(popen.pid)
        groups[name] = [parent, *parent.children(recursive=True)]
    root = embedded_services.data_dir()
    pid_files = {"redis": root / "redis" / "redis.pid", "postgresql": root / "postgres" / "postmaster.pid"}
    for name, pid_file in pid_files.items():
        if pid_file.exists():
            parent = psutil.Process(int(pid_file.read_text().split()[0]))
            groups[name] = [parent, *parent.children(recursive=True)]
    return groups


def _cpu_seconds(groups: dict[str, list[psutil.Process]]) -> dict[str, float]:
    totals = {}
    for name, members in groups.items():
        total = 0.0
        for process in members:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        totals[name] = total
    return totals


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not answer /healthz within 60 s")


# --- the load generator --------------------------------------------------------------------


def _event_parts(rollout_id: int, count: int, seed: int) -> list[bytes]:
    """Pre-built events split around their event_id and ts: [head, tail] per event."""
    rng = random.Random(seed)
    parts = []
    for _ in range(count):
        arm = rng.choice(("baseline", "candidate"))
        error = rng.random() < 0.01
        fields = {
            "prompt": PROMPT,
            "version": 1 if arm == "baseline" else 2,
            "rollout_id": rollout_id,
            "arm": arm,
            "latency_ms": round(rng.lognormvariate(6.685, 0.5), 1),  # median 800 ms
            "error": error,
            "error_type": "timeout" if error else None,
            "cost_usd": round(rng.uniform(0.001, 0.004), 5),
            "input_tokens": rng.randint(100, 600),
            "output_tokens": rng.randint(50, 300),
            "scores": {"helpfulness": round(min(1.0, max(0.0, rng.gauss(0.8, 0.15))), 3)},
        }
        rest = json.dumps(fields, separators=(",", ":"))[1:]
        parts += [b'{"event_id":"', b'","ts":"', b'",' + rest.encode()]
    return parts


def _client(
    port: int, key: str, rollout_id: int, args: argparse.Namespace, worker: int, deadline: float, out: list
) -> None:
    parts = _event_parts(rollout_id, args.batch, seed=worker)
    head, ts_sep, tails = parts[0], parts[1], parts[2::3]
    prefix = f"{random.getrandbits(32):08x}-{worker:04x}-4000-8000-".encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    counter = 0
    stats = {"accepted": 0, "duplicates": 0, "statuses": {}, "latencies": []}
    while time.monotonic() < deadline:
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
        pieces = [b'{"events":[']
        for i, tail in enumerate(tails):
            if i:
                pieces.append(b",")
            pieces += [head, prefix, b"%012x" % counter, ts_sep, ts, tail]
            counter += 1
        pieces.append(b"]}")
        body = b"".join(pieces)
        started = time.perf_counter()
        try:
            connection.request("POST", "/api/v1/events", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            status = response.status
        except OSError:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, answer = 0, b""
        stats["latencies"].append(time.perf_counter() - started)
        stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
        if status == 202:
            result = json.loads(answer)
            stats["accepted"] += result["accepted"]
            stats["duplicates"] += result["duplicates"]
    out.append(stats)


def _process(
    port: int, key: str, rollout_id: int, args: argparse.Namespace, index: int, start: float, queue
) -> None:
    deadline = start + args.duration
    while time.time() < start:
        time.sleep(0.01)
    deadline = time.monotonic() + args.duration
    out: list = []
    cpu_start = time.process_time()
    threads = [
        threading.Thread(target=_client, args=(port, key, rollout_id, args, index * 64 + t, deadline, out))
        for t in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out[0]["cpu"] = time.process_time() - cpu_start
    for stats in out[1:]:
        stats["cpu"] = 0.0
    queue.put(out)


def _run_load(port: int, key: str, rollout_id: int, args: argparse.Namespace) -> list[dict]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    start = time.time() + 1.0
    workers = [
        multiprocessing.Process(target=_process, args=(port, key, rollout_id, args, i, start, queue))
        for i in range(args.processes)
    ]
    for worker in workers:
        worker.start()
    results = []
    for _ in workers:
        results += queue.get()
    for worker in workers:
        worker.join()
    return results


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _report(results: list[dict], args: argparse.Namespace) -> None:
    accepted = sum(r["accepted"] for r in results)
    duplicates = sum(r["duplicates"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    statuses: dict[int, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    print(
        f"events accepted: {accepted:,} in {args.duration:.0f} s = {accepted / args.duration:,.0f} events/s "
        f"({len(latencies) / args.duration:,.1f} batches/s)\n"
        f"batch latency: p50 {_percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {_percentile(latencies, 0.99) * 1000:.1f} ms\n"
        f"answers: {dict(sorted(statuses.items()))}, duplicates reported: {duplicates}",
        flush=True,
    )


def _check(rollout_id: int, before: int, accepted: int) -> int:
    from outcomes.pending import batches_open, pending_count
    from outcomes.services import outcome_minutes_flush

    started = time.monotonic()
    while pending_count() or batches_open():
        outcome_minutes_flush()
    counted = _arm_samples(rollout_id) - before
    verdict = "OK: none lost, none counted twice" if counted == accepted else "MISMATCH"
    print(
        f"flush drained in {time.monotonic() - started:.2f} s; "
        f"events in the rollout's arms: {counted:,} (answered 202: {accepted:,}) {verdict}",
        flush=True,
    )
    return 0 if counted == accepted else 1


if __name__ == "__main__":
    sys.exit(main())
