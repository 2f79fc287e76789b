"""Where a resolve's time goes inside the Python process, without HTTP: CPU per request of the
WSGI short way (what gunicorn runs for a Bearer key) and of Django + DRF for the same request.

    .venv/bin/python bench/resolve_profile.py [--requests 20000] [--cprofile] [--overrides 1000]

Uses the embedded services and data of bench/resolve.py (bench/.results/data), and Prometheus's
multiprocess mode as the web server's workers do. HTTP parsing and
the socket work of gunicorn come on top of these figures; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--cprofile", action="store_true", help="print the top functions of the short way")
    parser.add_argument(
        "--overrides", type=int, default=0, help="overrides on the prompt; resolves then give 5 attributes"
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PROMPTRAMP_DATA_DIR", str(ROOT / "bench" / ".results" / "data"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import subprocess

    from bench.resolve import ATTRIBUTES_QUERY, PROMPT, load_bench_data
    from devstack import embedded_services, stack

    started = stack.prepare_environment()
    stack.prepare_metrics_dir()  # metrics in multiprocess mode, as the server's workers keep them
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], check=True)
        key = load_bench_data(overrides=args.overrides)
        query = ATTRIBUTES_QUERY if args.overrides else ""
        from config.wsgi import application, django_application

        path = f"/api/v1/prompts/{PROMPT}/resolve"
        for label, app in (("WSGI short way", application), ("Django + DRF view", django_application)):
            seconds = cpu_per_request(app, path, query, key, args.requests)
            print(f"{label:18} {seconds * 1e6:7.1f} us CPU per resolve ({args.requests} requests)")
        if args.cprofile:
            profile = cProfile.Profile()
            profile.runcall(cpu_per_request, application, path, query, key, args.requests)
            pstats.Stats(profile).sort_stats("tottime").print_stats(20)
    finally:
        embedded_services.stop(started)
    return 0


def cpu_per_request(
    app: Callable[..., Iterable[bytes]], path: str, query: str, key: str, count: int
) -> float:
    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        assert status.startswith("200"), status

    def environ(index: int) -> dict[str, Any]:
        return {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": f"unit=user-{index % 10_000:05d}{query}",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": f"Bearer {key}",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
        }

    for index in range(min(count, 2_000)):  # warm-up: caches loaded, code paths hot
        b"".join(app(environ(index), start_response))
    began = time.process_time()
    for index in range(count):
        b"".join(app(environ(index), start_response))
    return (time.process_time() - began) / count


if __name__ == "__main__":
    sys.exit(main())
