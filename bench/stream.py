"""Benchmark: how fast a rollback reaches 1,000 streaming clients (SPEC, quality bars).

    .venv/bin/python bench/stream.py [--connections 1000] [--sdk-clients 50] [--prompts 1000]

Starts the service's web server (gunicorn) and stream process (uvicorn) as `make run` does, on
embedded PostgreSQL and Redis (data under bench/.results/data unless PROMPTRAMP_DATA_DIR says
otherwise); loads 1,000 prompts, one of them with a running 10% rollout; connects real SDK
clients (`promptramp.Client`, in a process of their own) and asyncio SSE readers (another
process) to the stream; rolls the rollout back through the API and times, from the rollback's
2xx, the moment each client answers the baseline: for an SDK client, when its `get()` for a
unit in the candidate arm returns the baseline (observed with `on_snapshot`); for a reader, when
it has read the `change` event that ends the rollout. Times are CLOCK_MONOTONIC, shared by the
processes of one machine. Prints the distribution; the bar is 99% within 1 s and all within 2 s.
Stops what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the repository's packages

from bench.service import wait_until_answering  # noqa: E402

PROMPT = "bench.stream.0000"
TEMPLATE = "You answer {{question}} for {{customer}} briefly. Prompt {name}, version {version}."
STREAM_PATH = "/api/v1/snapshot/stream"
REPORT_AFTER_SECONDS = 5.0


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--sdk-clients", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--port", default=os.environ.get("PORT", "18090"))
    parser.add_argument("--worker", choices=["sdk", "readers"], help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--unit", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "sdk":
        return sdk_worker(args.target, args.key, args.unit, args.count)
    if args.worker == "readers":
        return asyncio.run(readers_worker(args.target, args.key, args.count))
    return run(args)


def run(args: argparse.Namespace) -> int:
    os.chdir(ROOT)
    os.environ.setdefault("PROMPTRAMP_DATA_DIR", str(ROOT / "bench" / ".results" / "data"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    stream_port = str(int(args.port) + 1)
    os.environ["PORT"], os.environ["STREAM_PORT"] = args.port, stream_port
    from devstack import embedded_services, stack

    started = stack.prepare_environment()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], check=True)
        read_key, write_key, rollout_id, unit = load_bench_data(args.prompts)
        stack.prepare_metrics_dir()
        web, stream = f"http://127.0.0.1:{args.port}", f"http://127.0.0.1:{stream_port}"
        processes.append(subprocess.Popen(stack.web_command("127.0.0.1", args.port)))
        processes.append(subprocess.Popen(stack.stream_command("127.0.0.1", stream_port)))
        wait_until_answering(web + "/api/v1/snapshot", read_key)
        wait_until_answering(stream + "/healthz", read_key)
        print(f"up: web {web}, stream {stream}; {args.prompts} prompts, rollout {rollout_id}", flush=True)

        readers = args.connections - args.sdk_clients
        workers = [
            worker("sdk", web, read_key, args.sdk_clients, unit),
            worker("readers", stream, read_key, readers, unit),
        ]
        processes += workers
        for process, count in zip(workers, (args.sdk_clients, readers), strict=True):
            line = process.stdout.readline() if process.stdout else b""
            if not line.startswith(b"ready"):
                raise SystemExit(f"a worker failed to connect its {count} clients: {line!r}")
        time.sleep(1.0)  # every stream waits for its next event
        print(f"connected: {args.sdk_clients} SDK clients, {readers} SSE readers", flush=True)

        answered = rollback(web, write_key, rollout_id)
        print(f"rolled back at {answered:.6f} (CLOCK_MONOTONIC)", flush=True)
        times: list[float] = []
        for process, kind in zip(workers, ("SDK clients", "SSE readers"), strict=True):
            out, _ = process.communicate(b"go\n", timeout=60)
            these = sorted(at - answered for at in json.loads(out.decode().strip().splitlines()[-1]))
            if these:
                print(f"{kind}: {len(these)}, median {statistics.median(these) * 1000:.1f} ms", flush=True)
            times += these
        report(times, args.connections)
        return 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        embedded_services.stop(started)


def worker(kind: str, target: str, key: str, count: int, unit: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "--worker", kind, "--target", target, "--key", key]
    command += ["--count", str(count), "--unit", unit]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sdk")}
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


def report(times: list[float], expected: int) -> None:
    times.sort()
    missing = expected - len(times)
    within_1 = sum(t <= 1.0 for t in times) / expected
    within_2 = sum(t <= 2.0 for t in times) / expected
    verdict = "met" if within_1 >= 0.99 and within_2 == 1 else "NOT met"
    quantile = statistics.quantiles(times, n=100, method="inclusive")
    print(
        f"clients answering the baseline: {len(times)} of {expected} (missing {missing})\n"
        f"from the rollback's 2xx: min {times[0] * 1000:.1f} ms, p50 {quantile[49] * 1000:.1f} ms, "
        f"p99 {quantile[98] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms\n"
        f"within 1 s: {within_1:.1%}, within 2 s: {within_2:.1%} "
        f"(bar: 99% within 1 s, all within 2 s: {verdict})",
        flush=True,
    )


def rollback(web: str, key: str, rollout_id: int) -> float:
    """POST the rollback (retried while the web process does not know the new key yet);
    returns CLOCK_MONOTONIC at its 2xx."""
    request = urllib.request.Request(
        f"{web}/api/v1/rollouts/{rollout_id}/rollback",
        data=b'{"reason": "bench/stream.py"}',
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    for _ in range(20):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return time.monotonic()
        except urllib.error.HTTPError as error:
            if error.code != 401:
                raise
            time.sleep(0.2)
    raise SystemExit("the rollback was refused")


def load_bench_data(count: int) -> tuple[str, str, int, str]:
    """The prompts (made once, kept), a new running 10% rollout on PROMPT, a read and a write
    key, and a unit in the candidate arm."""
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
    from serving.bucketing import bucket_of, default_salt

    actor = Actor.system()
    user, _ = get_user_model().objects.get_or_create(username="bench")
    existing = set(Prompt.objects.filter(name__startswith="bench.stream.").values_list("name", flat=True))
    for number in range(count):
        name = f"bench.stream.{number:04d}"
        if name in existing:
            continue
        prompt_create(actor=actor, name=name, kind="text", owners=["bench"])
        for version in (1, 2) if name == PROMPT else (1,):
            version_create(
                actor=actor,
                prompt_name=name,
                template=TEMPLATE.format(name=name, version=version),
                model="gpt-4o-mini",
                config={"temperature": 0.2},
                message=f"bench version {version}",
            )
    prompt = Prompt.objects.get(name=PROMPT)
    Rollout.objects.filter(prompt=prompt, state__in=Rollout.ACTIVE_STATES).update(state=Rollout.State.ABORTED)
    rollout = Rollout.objects.create(
        prompt=prompt,
        baseline=prompt.versions.get(version=1),
        candidate=prompt.versions.get(version=2),
        plan=[{"percent": 10, "min_duration_s": 600, "min_samples": 200}],
        gates=[],
        state=Rollout.State.RUNNING,
        percent=Decimal(10),
    )
    state_changed(SERVING_STATE)
    salt = default_salt(PROMPT, rollout.pk)
    unit = next(f"user-{n}" for n in range(10_000) if bucket_of(salt, f"user-{n}") < 1000)
    _, read_key = apikey_create(actor=actor, name="bench-read", user=user, scopes=["read"])
    _, write_key = apikey_create(actor=actor, name="bench-write", user=user, scopes=["write"])
    connection.close()
    return read_key, write_key, rollout.pk, unit


# --- the clients -------------------------------------------------------------------------------


def sdk_worker(web: str, key: str, unit: str, count: int) -> int:
    """`count` SDK clients; prints "ready" once all stream and, after a line on stdin, the
    CLOCK_MONOTONIC time at which each one's get() answered the baseline for `unit` (JSON)."""
    from promptramp import Client
    from promptramp.snapshot import Snapshot

    answered: list[float] = []
    lock = threading.Lock()

    def watcher(holder: list[Client]) -> object:
        def on_snapshot(snapshot: Snapshot) -> None:
            if holder and holder[0].get(PROMPT, unit=unit).arm != "candidate":
                with lock:
                    answered.append(time.monotonic())

        return on_snapshot

    clients = []
    for _ in range(count):
        holder: list[Client] = []
        client = Client(web, key, refresh_interval=30, initial_timeout=10, on_snapshot=watcher(holder))
        holder.append(client)
        if client.get(PROMPT, unit=unit).arm != "candidate":
            print(f"not on the candidate arm: {client.get(PROMPT, unit=unit)}", flush=True)
            return 1
        clients.append(client)
    deadline = time.monotonic() + 30
    while not all(client.streaming for client in clients):
        if time.monotonic() > deadline:
            print("not all streaming", flush=True)
            return 1
        time.sleep(0.05)
    print("ready", flush=True)
    sys.stdin.readline()  # the rollback was answered
    time.sleep(REPORT_AFTER_SECONDS)
    print(json.dumps(answered), flush=True)
    for client in clients:
        client.close(timeout=0.1)
    return 0


async def readers_worker(stream: str, key: str, count: int) -> int:
    """`count` raw SSE connections; prints "ready" once each has its snapshot and, after a line on
    stdin, the time at which each read the change that ended the rollout (a JSON list)."""
    host, port = stream.removeprefix("http://").split(":")
    answered: list[float] = []
    connected: list[asyncio.Event] = [asyncio.Event() for _ in range(count)]

    async def read(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port), limit=2**25)
        writer.write(
            f"GET {STREAM_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        event = ""
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                if event == "snapshot":
                    connected[index].set()
                elif event == "change" and b'"' + PROMPT.encode() + b'"' in line:
                    entry = json.loads(line[6:])["prompts"].get(PROMPT)
                    if entry is not None and entry["rollout"] is None:
                        answered.append(time.monotonic())
                        return

    tasks = []
    for start in range(0, count, 50):
        tasks += [asyncio.create_task(read(index)) for index in range(start, min(start + 50, count))]
        await asyncio.wait_for(asyncio.gather(*(connected[i].wait() for i in range(start, len(tasks)))), 60)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the rollback was answered
    await asyncio.wait(tasks, timeout=REPORT_AFTER_SECONDS)
    print(json.dumps(answered), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
