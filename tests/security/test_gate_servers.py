"""A writer's gate cannot make promptramp call a server of their choosing: gates name servers from
the settings, never URLs; a gate stored with a URL is never fetched; and what a gate's server
answers (its body) or the settings' credentials never reach a verdict a `read` key can see."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from rollouts.controller import rollout_evaluate
from rollouts.models import Rollout
from rollouts.plan import parse_gates
from rollouts.sources import RolloutArms, read_windows
from tests.factories import make_prompt
from tests.fakes.langfuse_server import FakeLangfuse
from tests.fakes.langfuse_server import serve as serve_langfuse
from tests.fakes.prometheus_server import FakePrometheus, serve

REQUESTS = 'sum(increase(llm_requests_total{version="{version}"}[{window}]))'
ERRORS = 'sum(increase(llm_errors_total{version="{version}"}[{window}]))'
PLAN = [
    {"percent": 10, "min_duration_s": 600, "min_samples": 200},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]


def prometheus_gate(**extra: object) -> dict[str, object]:
    return {
        "metric": "error_rate",
        "source": "prometheus",
        "max_increase_abs": 0.01,
        "query": {"requests": REQUESTS, "errors": ERRORS},
        **extra,
    }


def create(client: Any, gates: list[dict[str, object]]) -> Any:
    body = {"candidate_version": 2, "plan": PLAN, "gates": gates}
    return client.post("/api/v1/prompts/support.answer/rollouts", body, format="json")


@pytest.fixture
def prompt(alice: Any) -> Any:
    """support.answer with v1 (production) and v2, owned by alice."""
    return make_prompt(alice, versions=2)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[object]:
    """Every connection attempted from now on, but those to our own PostgreSQL and Redis,
    refused before a packet is sent."""
    ours = {urlsplit(settings.REDIS_URL).port, urlsplit(settings.CELERY_BROKER_URL).port}
    ours.add(int(settings.DATABASES["default"]["PORT"] or 5432))
    attempts: list[object] = []
    connect = socket.socket.connect

    def refuse(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[1] in ours:
            return connect(sock, address)
        attempts.append(address)
        raise ConnectionRefusedError("no connection in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:6379/", "https://attacker.example/#"],
)
def test_a_gate_carrying_a_url_is_refused_and_nothing_is_stored(
    url, prompt, alice, client_with_key, connections
):
    # Given a writer who owns the prompt
    writer = client_with_key(alice, "write")

    # When they create a rollout whose gate carries a URL
    response = create(writer, [prometheus_gate(url=url)])

    # Then it is a 400 naming the field, nothing is stored, and nothing was called
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"] == {"field": "gates[0].url"}
    assert "never carry URLs" in error["message"]
    assert Rollout.objects.count() == 0
    assert connections == []


@pytest.mark.django_db
def test_a_gate_naming_a_server_the_settings_do_not_name_is_refused(prompt, alice, client_with_key, settings):
    settings.PROMPTRAMP_PROMETHEUS_SERVERS = {"eu": "http://prometheus.eu:9090"}
    writer = client_with_key(alice, "write")

    refused = create(writer, [prometheus_gate(server="internal-redis")])
    accepted = create(writer, [prometheus_gate(server="eu")])

    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {"field": "gates[0].server"}
    assert "eu" in refused.json()["error"]["message"]
    assert accepted.status_code == 201
    assert accepted.json()["gates"][0]["server"] == "eu"


@pytest.mark.django_db
def test_a_stored_gate_with_a_url_is_insufficient_data_and_never_fetched(
    prompt, alice, client_with_key, connections
):
    # Given a running rollout whose gate was stored with a URL (before gates named servers)
    writer = client_with_key(alice, "write")
    created = create(writer, [prometheus_gate()])
    assert created.status_code == 201
    Rollout.objects.filter(pk=created.json()["id"]).update(
        gates=[prometheus_gate(url="http://169.254.169.254/latest/meta-data/")]
    )

    # When the controller evaluates it
    rollout_evaluate(rollout_id=created.json()["id"])

    # Then the gate is insufficient_data saying why, and nothing was called
    verdicts = (
        client_with_key(alice, "read").get(f"/api/v1/rollouts/{created.json()['id']}").json()["verdicts"]
    )
    assert [v["verdict"] for v in verdicts if v["metric"] != "traffic"] == ["insufficient_data"]
    assert "carries a url" in verdicts[0]["detail"]
    assert connections == []


@pytest.mark.django_db
def test_a_gate_servers_reply_and_the_settings_credentials_never_reach_a_verdict(
    prompt, alice, client_with_key, settings
):
    # Given a Prometheus (named in the settings with credentials) answering an error with a body
    state = FakePrometheus(fail_status=500)
    with serve(state) as url:
        settings.PROMETHEUS_URL = url.replace("http://", "http://scraper:hunter2@")
        writer = client_with_key(alice, "write")
        created = create(writer, [prometheus_gate()])

        # When the controller evaluates the rollout
        rollout_evaluate(rollout_id=created.json()["id"])

    # Then the verdict a read key sees says what happened, in our words only
    verdicts = (
        client_with_key(alice, "read").get(f"/api/v1/rollouts/{created.json()['id']}").json()["verdicts"]
    )
    detail = verdicts[0]["detail"]
    assert verdicts[0]["verdict"] == "insufficient_data"
    assert "HTTP 500" in detail
    assert "fake Prometheus failure" not in detail and "internal" not in detail
    assert "hunter2" not in detail and "scraper" not in detail
    assert state.requests  # the server was asked, with the credentials as basic auth


@pytest.mark.django_db
def test_slow_gate_servers_hold_an_evaluation_no_longer_than_its_deadline(settings):
    # Given a Prometheus and a Langfuse that each take 3 s to answer, and a 1 s deadline
    settings.PROMPTRAMP_EVALUATION_DEADLINE_SECONDS = 1.0
    prometheus, langfuse = FakePrometheus(delay_seconds=3.0), FakeLangfuse(delay_seconds=3.0)
    gates = parse_gates(
        [prometheus_gate(), {"metric": "error_rate", "source": "langfuse", "max_increase_abs": 0.01}]
    )
    arms = RolloutArms(rollout_id=1, prompt="support.answer", baseline_version=1, candidate_version=2)
    until = timezone.now()
    with serve(prometheus) as prometheus_url, serve_langfuse(langfuse) as langfuse_url:
        settings.PROMETHEUS_URL = prometheus_url
        settings.LANGFUSE_BASE_URL = langfuse_url
        settings.LANGFUSE_PUBLIC_KEY, settings.LANGFUSE_SECRET_KEY = langfuse.public_key, langfuse.secret_key
        started = time.monotonic()

        # When an evaluation reads its sources
        windows = read_windows(rollout=arms, gates=gates, since=until - timedelta(minutes=5), until=until)

        # Then it is done within the deadline, each source unavailable with the cause
        assert time.monotonic() - started < 1.5
    assert set(windows) == {"ingest", "prometheus", "langfuse"}  # ingest: for the traffic check
    causes = [str(window.error) for key, window in windows.items() if key != "ingest"]
    assert all("within" in cause or "deadline" in cause for cause in causes), causes


@pytest.mark.django_db  # the ingest source is read too, for the traffic check
def test_a_langfuse_answer_over_one_mib_is_not_read(settings):
    # Given a Langfuse server answering every request with 2 MiB
    class Huge(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = b'{"data": [], "meta": {"x": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()  # no Content-Length: read until the connection closes
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.LANGFUSE_BASE_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.LANGFUSE_PUBLIC_KEY, settings.LANGFUSE_SECRET_KEY = "pk-lf", "sk-lf"
    gates = parse_gates([{"metric": "error_rate", "source": "langfuse", "max_increase_abs": 0.01}])
    arms = RolloutArms(rollout_id=1, prompt="support.answer", baseline_version=1, candidate_version=2)
    until = timezone.now()
    try:
        # When an evaluation reads it
        windows = read_windows(rollout=arms, gates=gates, since=until - timedelta(minutes=5), until=until)
    finally:
        server.shutdown()
        server.server_close()

    # Then the source is unavailable, saying the answer was too long
    assert "more than 1048576 bytes" in str(windows["langfuse"].error)
