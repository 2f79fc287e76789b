"""SDK local resolve (without render): time per `Client.get` over 10,000 distinct units, beside
the Unleash Python SDK evaluating the same 10% variant flag for the same units, in the same run.

The bars (SPEC, quality bars): ≤ 5 µs median per call, at least 10× faster than Unleash's
`get_variant`, no network on the hot path. The client loads its snapshot from a local HTTP
server once, then every call is timed on its own with perf_counter_ns (the timer's own cost,
printed, is included in the figures). Unleash's client is bootstrapped from a dict with
registration, metrics and fetching off, its URL a closed port of 127.0.0.1; every socket
connection the process opens while Unleash runs is counted (an audit hook) and must be none.

With ``--overrides N`` the rollout's prompt also carries N overrides (half by unit, half by
tenant, none of them the timed units', so each call looks up its unit and each attribute and
still ends in the rollout's hashed split), and every call gives five attributes.

    PYTHONPATH=sdk .venv/bin/python bench/sdk_resolve.py [--rounds 5] [--overrides 1000]
"""

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache

from promptramp import Client

BAR_NS = 5_000
BAR_TIMES_UNLEASH = 10
UNITS = [f"user-{number}" for number in range(10_000)]
PERCENT = 10


def version(number: int, template: str) -> dict[str, object]:
    body = {"version": number, "kind": "text", "template": template, "model": "gpt-4o-mini"}
    return body | {"config": {"temperature": 0.2}, "variables": ["question"]}


ATTRIBUTES = {"tenant": "tenant-none", "plan": "pro", "region": "eu", "device": "web", "locale": "de"}


def snapshot(overrides: int) -> bytes:
    answer: dict[str, object] = {
        "production": version(3, "Answer {{question}}"),
        "rollout": {
            "id": 7,
            "state": "running",
            "percent": PERCENT,
            "salt": "support.answer:7",
            "baseline": version(3, "Answer {{question}}"),
            "candidate": version(4, "Answer {{question}} kindly"),
        },
    }
    if overrides:
        answer["overrides"] = [
            {
                "id": number,
                "match": {"unit": f"qa-{number}"}
                if number % 2
                else {"attribute": "tenant", "value": f"tenant-{number}"},
                "version": 5,
                "arm": None,
                "rollout_id": 7,
                "expires_at": "2099-01-01T00:00:00+00:00" if number % 3 else None,
            }
            for number in range(1, overrides + 1)
        ]
        answer["override_versions"] = {"5": version(5, "Answer {{question}} for QA")}
    return json.dumps(
        {
            "generated_at": "2026-11-23T12:00:00Z",
            "prompts": {
                "support.answer": answer,
                "support.triage": {"production": version(2, "Triage {{question}}"), "rollout": None},
            },
        }
    ).encode()


# Unleash's flag as its /api/client/features answers it: the same 10% (flexibleRollout, sticky on
# userId) with the baseline and the candidate as two variants.
UNLEASH_FEATURES = {
    "version": 2,
    "features": [
        {
            "name": "support.answer",
            "type": "release",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "constraints": [],
                    "parameters": {
                        "rollout": str(PERCENT),
                        "stickiness": "userId",
                        "groupId": "support.answer",
                    },
                    "variants": [
                        {
                            "name": f"v{number}",
                            "weight": 500,
                            "weightType": "variable",
                            "stickiness": "userId",
                            "payload": {"type": "json", "value": json.dumps(version(number, template))},
                        }
                        for number, template in (
                            (3, "Answer {{question}}"),
                            (4, "Answer {{question}} kindly"),
                        )
                    ],
                }
            ],
        }
    ],
}


class SnapshotHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("ETag", '"bench"')
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

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
    print(f"{label:<52} median {median / 1000:6.2f} µs   p99 {p99 / 1000:6.2f} µs")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the 10,000 units")
    parser.add_argument("--overrides", type=int, default=0, help="overrides on the rollout's prompt")
    arguments = parser.parse_args()
    rounds, overrides = arguments.rounds, arguments.overrides
    SnapshotHandler.body = snapshot(overrides)

    server = ThreadingHTTPServer(("127.0.0.1", 0), SnapshotHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    with Client(f"http://{host}:{port}", "bench", refresh_interval=3600) as client:
        assert client.snapshot is not None, "the client did not load the snapshot"
        server.shutdown()  # from here on, any network call would fail loudly
        server.server_close()
        get = client.get
        attributes = ATTRIBUTES if overrides else None
        per_call_ns(lambda unit: get("support.answer", unit=unit, attributes=attributes), 1)  # warm-up
        candidates = sum(
            get("support.answer", unit=unit, attributes=attributes).arm == "candidate" for unit in UNITS
        )
        if overrides:
            hit = get("support.answer", unit="qa-1", attributes=attributes)
            assert hit.arm == "override" and hit.version == 5, "the overrides are not applied"

        print(f"{len(UNITS):,} distinct units × {rounds} rounds, each call timed on its own")
        summary("perf_counter_ns alone (timer cost)", per_call_ns(lambda unit: None, rounds))
        with_overrides = f", {overrides:,} overrides, 5 attributes" if overrides else ""
        median = summary(
            f"get, running rollout{with_overrides} (hash + arm; {candidates / len(UNITS):.1%} candidate)",
            per_call_ns(lambda unit: get("support.answer", unit=unit, attributes=attributes), rounds),
        )
        summary(
            "get, production only (no rollout)",
            per_call_ns(lambda unit: get("support.triage", unit=unit), rounds),
        )
        summary(
            "get, rollout without unit (random bucket)",
            per_call_ns(lambda unit: get("support.answer"), rounds),
        )
    get_variant = time_unleash(rounds)
    verdict = "met" if median <= BAR_NS else "MISSED"
    print(f"bar ≤ {BAR_NS / 1000:.0f} µs median per call (running rollout): {verdict}")
    times = get_variant / median
    verdict = "met" if times >= BAR_TIMES_UNLEASH else "MISSED"
    print(f"bar ≥ {BAR_TIMES_UNLEASH}× faster than Unleash's get_variant: {times:.1f}× ({verdict})")


def time_unleash(rounds: int) -> float:
    """The Unleash Python SDK on the same flag, bootstrapped, with nothing that fetches or
    reports; returns get_variant's median. Fails when the process opened any connection
    while the Unleash client existed."""
    connections: list[object] = []
    counting = threading.Event()

    def count_connections(event: str, args: tuple[object, ...]) -> None:
        if event == "socket.connect" and counting.is_set():
            connections.append(args[1])

    sys.addaudithook(count_connections)
    with socket.socket() as probe:  # a port of 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    counting.set()
    with tempfile.TemporaryDirectory() as folder:
        cache = FileCache("bench", directory=folder)
        cache.bootstrap_from_dict(UNLEASH_FEATURES)
        unleash = UnleashClient(
            url=f"http://127.0.0.1:{closed_port}",
            app_name="bench",
            refresh_interval=3600,
            disable_metrics=True,
            disable_registration=True,
            cache=cache,
        )
        unleash.initialize_client(fetch_toggles=False)
        try:
            variant, enabled = unleash.get_variant, unleash.is_enabled
            per_call_ns(lambda unit: variant("support.answer", {"userId": unit}), 1)  # warm-up
            shown = sum(variant("support.answer", {"userId": unit})["enabled"] for unit in UNITS)
            median = summary(
                f"Unleash get_variant, same flag ({shown / len(UNITS):.1%} in it)",
                per_call_ns(lambda unit: variant("support.answer", {"userId": unit}), rounds),
            )
            summary(
                "Unleash is_enabled, same flag",
                per_call_ns(lambda unit: enabled("support.answer", {"userId": unit}), rounds),
            )
        finally:
            unleash.destroy()
    counting.clear()
    print(f"connections opened while Unleash ran: {len(connections)}")
    assert not connections, f"Unleash connected to {connections}"
    return median


if __name__ == "__main__":
    main()
