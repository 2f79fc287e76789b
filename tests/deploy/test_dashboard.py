"""The Grafana dashboard (deploy/grafana/promptramp.json) against a real Prometheus (Debian's
package) scraping a running promptramp every second: after resolves, events, a rollout and a tick
through a Celery worker, every panel's query returns data, and only from promptramp's series; the
alert rules name only series the service serves."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.db import connection

from outcomes.pending import batches_open, pending_count
from outcomes.tasks import flush
from rollouts.tasks import rollouts_tick
from tests.factories import make_key, make_prompt
from tests.rollouts.test_controller import reload, start, step, wait_until
from tests.rollouts.test_controller_faults import start_worker_process, worker_processes  # noqa: F401
from tests.rollouts.test_metrics import outcomes, post_events
from tests.rollouts.test_metrics import scrape as scrape_samples
from tests.servers import base_env, database_url, free_port, http_get, stop, wait_for, web_server

DASHBOARD = Path(settings.BASE_DIR) / "deploy" / "grafana" / "promptramp.json"
ALERTS = Path(settings.BASE_DIR) / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = "/usr/bin/prometheus"


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_panel_query_reads_promptramp_series_and_no_constant():
    queries = panel_queries()
    assert len(queries) >= 15
    for title, expr in queries:
        assert re.search(r"\bpromptramp_[a-z_]+", expr), title
        assert "vector(" not in expr and not re.search(r"\bor\b", expr), title


def prometheus_query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real Prometheus on 127.0.0.1; yields its URL and its config file (scrape targets are
    written there, then it is told to reload)."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs: []\n")
    log = tmp_path / "prometheus.log"
    command = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level=warn"]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url, process, log), seconds=30, every=0.2)
        yield url, config
    finally:
        stop(process)


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, log.read_text()[-3000:]
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def scrape(prometheus: tuple[str, Path], target: str) -> None:
    url, config = prometheus
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: promptramp\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    urllib.request.urlopen(urllib.request.Request(f"{url}/-/reload", method="POST"), timeout=10).close()


@pytest.mark.django_db(transaction=True)
def test_every_panel_query_returns_data_from_a_real_prometheus(
    alice,
    prometheus,
    worker_processes,  # noqa: F811 (the fixture imported above)
    tmp_path,
):
    make_prompt(alice, versions=2)
    folder = tmp_path / "multiproc"
    folder.mkdir()
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), PROMETHEUS_MULTIPROC_DIR=str(folder))
    worker_processes.append(start_worker_process("dashboard"))
    read_key, ingest_key = make_key(alice, "read"), make_key(alice, "ingest")
    started = time.monotonic()

    with web_server(env, tmp_path / "web.log") as url:
        scrape(prometheus, url.removeprefix("http://"))
        rollout = start(alice, [step(10, samples=100), step(50), step(100, samples=0)])
        up = 'up{job="promptramp"}'
        wait_until(lambda: any(s["value"][1] == "1" for s in prometheus_query(prometheus[0], up)))
        # Traffic over a few scrapes: resolves, events (and refused ones), the flush, a tick.
        sent = outcomes(rollout, "baseline", 150) + outcomes(rollout, "candidate", 150)
        for second in range(4):
            for unit in range(25):
                reply = http_get(
                    f"{url}/api/v1/prompts/support.answer/resolve?unit=u{second}-{unit}", key=read_key
                )
                assert reply.status == 200
            assert post_events(url, ingest_key, sent[second * 75 : (second + 1) * 75]) == 202
            assert post_events(url, ingest_key, [{"event_id": "not-a-uuid"}]) == 400
            flush.delay()
            time.sleep(1)
        wait_until(lambda: pending_count() == 0 and not batches_open())  # every event in PostgreSQL
        rollouts_tick.delay()
        wait_until(lambda: reload(rollout).percent == 50)
        time.sleep(3)  # a few scrapes after the tick

        # The alert rules' unit tests feed them series by name: those names are the service's.
        served = {name for name, _ in scrape_samples(url)}
        rules = [
            rule["expr"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
        ]
        assert {name for expr in rules for name in re.findall(r"\bpromptramp_\w+", expr)} - served == set()

        missing: list[str] = []
        for title, expr in panel_queries():
            result = prometheus_query(prometheus[0], expr)
            if not [s for s in result if not math.isnan(float(s["value"][1]))]:
                missing.append(f"{title}: {expr} -> {result}")
        assert not missing, "\n".join(missing)
    assert time.monotonic() - started < 60
