"""Benchmark: one controller tick over 1,000 running rollouts (the bar: ≤ 5 s).

    .venv/bin/python -m bench.controller_tick [--rollouts 1000] [--events 200]

Runs against a database of its own (created, migrated and dropped here) on the configured or
embedded PostgreSQL. Each rollout gets a prompt with two versions, the default gates, and
``--events`` outcome events per arm in its current step's window (through the ingest path), so
every evaluation reads real aggregates and runs every gate's statistics. Then it times what
`manage.py rollouts tick` does: evaluate every running rollout once, each in its own
transaction, in this one process.
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
    parser.add_argument("--events", type=int, default=200, help="outcome events per arm and rollout")
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
        make_running_rollouts(count=args.rollouts, events_per_arm=args.events)
        print(
            f"set-up: {args.rollouts} running rollouts, {args.events} events per arm, "
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
