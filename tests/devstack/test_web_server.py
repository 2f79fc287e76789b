"""The web server as the run command starts it (devstack.stack.web_command) stops with all its
workers, leaving the port free, on SIGTERM and on Ctrl-C's SIGINT to its process group."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from django.conf import settings
from django.db import connection

from core.state_cache import WARM_LOG_MARK
from devstack.stack import web_command
from tests.servers import base_env, database_url, free_port, http_get, wait_for


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop", ["sigterm", "ctrl_c"])
def test_the_web_server_and_all_its_workers_stop_within_five_seconds(stop, tmp_path):
    port, log = free_port(), tmp_path / "web.log"
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), WEB_CONCURRENCY="2")
    with open(log, "ab") as output:
        server = subprocess.Popen(
            web_command("127.0.0.1", str(port), env),
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=output,
            start_new_session=True,  # a process group of its own, as a terminal gives
        )
    processes = [psutil.Process(server.pid)]
    try:
        wait_for(lambda: log.read_text().count(WARM_LOG_MARK) == 2, seconds=60, every=0.2)
        processes += processes[0].children(recursive=True)
        with ThreadPoolExecutor(16) as pool:  # requests on many connections, at once
            replies = list(pool.map(lambda _: http_get(f"http://127.0.0.1:{port}/healthz"), range(200)))
        assert {reply.status for reply in replies} == {200}

        began = time.monotonic()
        if stop == "sigterm":
            server.terminate()
        else:
            os.killpg(server.pid, signal.SIGINT)
        _, alive = psutil.wait_procs(processes, timeout=5)

        assert alive == [], f"still running {time.monotonic() - began:.1f} s after the signal"
        with socket.socket() as sock:  # the port is free for the next server
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # whatever is left of its group
        server.wait()
