"""SDK local resolve (without render): time per `Client.get` over 10,000 distinct units.

The bar (SPEC, quality bars): ≤ 5 µs median per call, no network on the hot path. The client
loads its snapshot from a local HTTP server once, then every call is timed on its own with
perf_counter_ns (the timer's own cost, printed, is included in the figures).

    PYTHONPATH=sdk .venv/bin/python bench/sdk_resolve.py [--rounds 5]
"""

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from promptramp import Client

BAR_NS = 5_000
UNITS = [f"user-{number}" for number in range(10_000)]


def version(number: int, template: str) -> dict[str, object]:
    body = {"version": number, "kind": "text", "template": template, "model": "gpt-4o-mini"}
    return body | {"config": {"temperature": 0.2}, "variables": ["question"]}


SNAPSHOT = json.dumps(
    {
        "generated_at": "2026-11-23T12:00:00Z",
        "prompts": {
            "support.answer": {
                "production": version(3, "Answer {{question}}"),
                "rollout": {
                    "id": 7,
                    "state": "running",
                    "percent": 25,
                    "salt": "support.answer:7",
                    "baseline": version(3, "Answer {{question}}"),
                    "candidate": version(4, "Answer {{question}} kindly"),
                },
            },
            "support.triage": {"production": version(2, "Triage {{question}}"), "rollout": None},
        },
    }
).encode()


class SnapshotHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("ETag", '"bench"')
        self.send_header("Content-Length", str(len(SNAPSHOT)))
        self.end_headers()
        self.wfile.write(SNAPSHOT)

    def log_message(self, format: str, *args: object) -> None:
        pass


def per_call_ns(call: Callable[[str], object], rounds: int) -> list[int]:
    clock = time.perf_counter_ns
    timings = []
    for _ in range(rounds):
        for unit in UNITS:
            started = clock()
            call(unit)
            timings.append(clock() - started)
    return timings


def summary(label: str, timings: list[int]) -> float:
    median = statistics.median(timings)
    p99 = statistics.quantiles(timings, n=100)[98]
    print(f"{label:<44} median {median / 1000:6.2f} µs   p99 {p99 / 1000:6.2f} µs")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the 10,000 units")
    rounds = parser.parse_args().rounds

    server = ThreadingHTTPServer(("127.0.0.1", 0), SnapshotHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    with Client(f"http://{host}:{port}", "bench", refresh_interval=3600) as client:
        assert client.snapshot is not None, "the client did not load the snapshot"
        server.shutdown()  # from here on, any network call would fail loudly
        get = client.get
        per_call_ns(lambda unit: get("support.answer", unit=unit), 1)  # warm-up

        print(f"{len(UNITS):,} distinct units × {rounds} rounds, each call timed on its own")
        summary("perf_counter_ns alone (timer cost)", per_call_ns(lambda unit: None, rounds))
        median = summary(
            "get, running rollout (hash + arm)",
            per_call_ns(lambda unit: get("support.answer", unit=unit), rounds),
        )
        summary(
            "get, production only (no rollout)",
            per_call_ns(lambda unit: get("support.triage", unit=unit), rounds),
        )
        summary(
            "get, rollout without unit (random bucket)",
            per_call_ns(lambda unit: get("support.answer"), rounds),
        )
    verdict = "met" if median <= BAR_NS else "MISSED"
    print(f"bar ≤ {BAR_NS / 1000:.0f} µs median per call (running rollout): {verdict}")


if __name__ == "__main__":
    main()
