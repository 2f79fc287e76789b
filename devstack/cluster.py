"""The cluster command (`make cluster`): the service as several nodes on one machine, behind a
load balancer, to watch it survive losing a node.

    python -m devstack.cluster

Set up as the run command does (embedded PostgreSQL and Redis unless configured, migrations, the
admin, the demo prompt), then: two web servers (``web-1``, ``web-2``) and the stream process,
each on a free port of its own, behind nginx (Debian's, ``NGINX`` to use another binary) on
``PORT`` (default 8000); two Celery workers (``node-1``, ``node-2``) each consuming every queue,
so that either one alone does all the work; one beat. Each process leads a process group of its
own, so that ``kill -KILL -PGID`` takes a node down as a machine's crash would. A node that
exits is reported and the others keep serving; Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack import embedded_services
from devstack.stack import (
    QUEUES,
    StopSignals,
    beat_command,
    prepare_environment,
    prepare_metrics_dir,
    set_up,
    stream_command,
    terminate,
    web_command,
    worker_command,
)

NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")


@dataclass(frozen=True)
class Node:
    name: str
    command: list[str]
    env: Mapping[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def balancer_config(*, port: int, web_ports: list[int], stream_port: int, folder: Path) -> str:
    """nginx's configuration: ``port`` on 127.0.0.1 spreads requests over the web servers and
    sends the snapshot stream to the stream process.

    A request a web server could not take (connection refused or reset, no answer in time) goes
    to the next one. nginx does that for a POST only with ``non_idempotent``, which only the
    events endpoint has: an events batch sent twice stores each event once (event ids are
    de-duplicated), so a batch cut off by a dying server is retried and stored, never lost or
    doubled. Other writes are not retried: the caller sees the 502 and decides. A request body
    (events are 4 MiB at most) and the answers stay in memory: no temporary files."""
    upstream = "\n".join(f"    server 127.0.0.1:{web} max_fails=1 fail_timeout=5s;" for web in web_ports)
    proxy = """
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_buffering off;
      proxy_connect_timeout 2s;"""
    return f"""daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {folder}/client_body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  client_max_body_size 5m;
  client_body_buffer_size 5m;
  upstream web {{
{upstream}
    keepalive 32;
  }}
  upstream stream {{
    server 127.0.0.1:{stream_port};
  }}
  server {{
    listen 127.0.0.1:{port};
    proxy_next_upstream error timeout;
    proxy_read_timeout 30s;
    location / {{
      proxy_pass http://web;{proxy}
    }}
    location = /api/v1/events {{
      proxy_pass http://web;
      proxy_next_upstream error timeout non_idempotent;{proxy}
    }}
    location = /api/v1/snapshot/stream {{
      proxy_pass http://stream;{proxy}
      proxy_read_timeout 1h;
    }}
  }}
}}
"""


def cluster_nodes(*, host: str, port: int, env: Mapping[str, str] = os.environ) -> list[Node]:
    """Every process of the cluster with its environment: the web servers and the stream process
    on free ports, the workers, beat, and nginx in front on ``port`` (its configuration written
    under the data folder). The web servers run WEB_CONCURRENCY processes each (default 1: two
    nodes of one)."""
    if host != "127.0.0.1":
        raise ValueError("the cluster listens on 127.0.0.1 only")
    web_ports, stream_port = [free_port(), free_port()], free_port()
    folder = embedded_services.data_dir() / "nginx"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "nginx.conf"
    config.write_text(balancer_config(port=port, web_ports=web_ports, stream_port=stream_port, folder=folder))
    node_env = {
        **env,
        "WEB_CONCURRENCY": env.get("WEB_CONCURRENCY", "1"),
        "PROMPTRAMP_STREAM_URL": env.get("PROMPTRAMP_STREAM_URL")
        or f"http://{host}:{port}/api/v1/snapshot/stream",
        "PROMPTRAMP_TRUSTED_PROXIES": env.get("PROMPTRAMP_TRUSTED_PROXIES") or "127.0.0.1",
    }
    return [
        *(
            Node(f"web-{i}", web_command(host, str(web), node_env), node_env)
            for i, web in enumerate(web_ports, start=1)
        ),
        Node("stream", stream_command(host, str(stream_port)), node_env),
        *(Node(f"node-{i}", worker_command(f"node-{i}@%h", QUEUES, node_env), node_env) for i in (1, 2)),
        Node("beat", beat_command(), node_env),
        Node("balancer", [NGINX, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")], env),
    ]


def run() -> int:
    stop_signals = StopSignals()
    started: list[str] = []
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with stop_signals.held():  # a service started but not yet recorded would be left running
            started = prepare_environment()
        user, password_note = set_up()
        host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
        prepare_metrics_dir()
        nodes = cluster_nodes(host=host, port=port)
        with stop_signals.held():
            for node in nodes:
                processes[node.name] = subprocess.Popen(
                    node.command, env=dict(node.env), start_new_session=True
                )
        for node in nodes:
            print(f"{node.name}: pid {processes[node.name].pid}  {' '.join(node.command[:8])}", flush=True)
        print(
            f"\npromptramp is running as a cluster: http://{host}:{port}/admin/  "
            f"(user {user!r}, {password_note})\n"
            f"Take a node down: kill -KILL -<its pid>.  Ctrl-C stops everything.\n",
            flush=True,
        )
        return _watch(processes)
    except KeyboardInterrupt:
        return 0
    finally:
        stop_signals.ignore()  # a second Ctrl-C must not cut the clean-up short
        terminate(list(processes.values()))
        embedded_services.stop(started)


def _watch(processes: dict[str, subprocess.Popen[bytes]]) -> int:
    """Report each node that exits; return (nginx's exit code) when the balancer exits, for
    without it nothing is reachable, or on a stop signal (KeyboardInterrupt)."""
    reported: set[str] = set()
    while True:
        for name, process in processes.items():
            if name not in reported and process.poll() is not None:
                reported.add(name)
                print(
                    f"{name} exited with {process.returncode}; the others go on", file=sys.stderr, flush=True
                )
                if name == "balancer":
                    return process.returncode or 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(run())
