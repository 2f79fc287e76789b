"""Benchmark: one controller tick over 1,000 running rollouts (the bar: ≤ 5 s).

    .venv/bin/python -m bench.controller_tick [--rollouts 1000] [--events 200] [--even-split]

Runs against a database of its own (created, migrated and dropped here) on the configured or
embedded PostgreSQL. Each rollout gets a prompt with two versions, the default plan and gates, and
outcome events in its current step's window (through the ingest path): ``--events`` for the
candidate (default 200, the first step's min_samples) and as many for the baseline as its share
of the step's traffic (1,800 at 10%), so every evaluation reads real aggregates, runs every
gate's statistics and the traffic check, and holds. With ``--even-split`` both arms get
``--events``: the traffic check finds the candidate's share far off the step's and every rollout
is paused, so the tick makes 1,000 transitions (each with its audit entry and webhook message).
Then it times what `manage.py rollouts tick` does: evaluate every running rollout once, each in
its own transaction, in this one process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from io import StringIO

import django


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200, help="candidate events per rollout (baseline: 9x)")
    parser.add_argument(
        "--even-split", action="store_true", help="as many baseline events: every rollout pauses"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from devstack import stack

    stack.prepare_environment()
    django.setup()
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    connections["default"].settings_dict["TEST"]["NAME"] = "promptramp_bench"
    databases = setup_databases(verbosity=0, interactive=False)
    try:
        from bench.controller_data import make_running_rollouts

        started = time.perf_counter()
        make_running_rollouts(count=args.rollouts, candidate_events=args.events, even_split=args.even_split)
        print(
            f"set-up: {args.rollouts} running rollouts, {args.events} candidate events each, "
            f"in {time.perf_counter() - started:.1f} s"
        )

        import psutil
        from django.core.management import call_command
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = psutil.Process(cursor.fetchone()[0])
        output = StringIO()
        pg_started = sum(backend.cpu_times()[:2])
        started, cpu_started = time.perf_counter(), time.process_time()
        call_command("rollouts", "tick", stdout=output)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        pg_cpu = sum(backend.cpu_times()[:2]) - pg_started
        lines = output.getvalue().splitlines()
        holds = sum(": hold — " in line for line in lines)
        print(f"{lines[-1]} ({holds} held after evaluating every gate on their aggregates)")
        print(
            f"controller tick over {args.rollouts} running rollouts: {elapsed:.2f} s wall "
            f"({elapsed / args.rollouts * 1000:.2f} ms per rollout; bar: 5 s)"
        )
        print(
            f"CPU: {cpu:.2f} s in this process + {pg_cpu:.2f} s in its PostgreSQL backend = "
            f"{cpu + pg_cpu:.2f} s (about the wall time on an otherwise idle machine)"
        )
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        teardown_databases(databases, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
