"""Logs never hold a key, a unit, a variable value or an attribute value. Real processes — the web
server (both its resolve paths), the stream process and a Celery worker, as the run command
starts them, at LOG_LEVEL=DEBUG with JSON logs — are driven through every part that sees those
values (the keys API, resolve, render, the stream, events, the admin, a task a request enqueued),
each value made distinctive (``unit-<uuid>``…) so a match cannot be a coincidence; then
everything they wrote is searched for every one of them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from django.db import connection

from config.celery import app as celery_app
from rollouts.webhooks import webhook_create
from tests.factories import UserFactory, actor_for, make_key, make_prompt
from tests.rollouts.conftest import webhook_receiver  # noqa: F401 (the fixture)
from tests.servers import base_env, database_url, stop, wait_for
from tests.serving.stream_helpers import SSEReader, service

pytestmark = pytest.mark.django_db(transaction=True)
PLAN = [
    {"percent": 50, "min_duration_s": 600, "min_samples": 0},
    {"percent": 100, "min_duration_s": 0, "min_samples": 0},
]
STREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ENV = {"LOG_LEVEL": "DEBUG", "PROMPTRAMP_LOG_FORMAT": "json", "PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE": "1"}


class Secrets:
    """Every value the run used that no log may show."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def new(self, kind: str) -> str:
        value = f"{kind}-{uuid.uuid4()}"
        self.values.append(value)
        return value

    def add(self, value: str) -> str:
        self.values.append(value)
        return value


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Path]:
    """A Celery worker of every queue, as the run command starts one, writing into a log file."""
    celery_app.control.purge()
    log = tmp_path / "worker.log"
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), **ENV)
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--queues",
        "controller,ingest,outbound",
    ]
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [*command, "--hostname", f"leaks-{uuid.uuid4().hex[:6]}@%h", "--concurrency", "1"],
            env=env,
            stdout=output,
            stderr=output,
        )
    try:
        wait_for(lambda: bool(celery_app.control.ping(timeout=0.5)), seconds=60)
        yield log
    finally:
        stop(process)


def test_no_log_line_holds_a_key_unit_variable_or_attribute(tmp_path, settings, worker, webhook_receiver):  # noqa: F811
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    secrets = Secrets()
    admin = UserFactory(username="leak-admin", is_superuser=True)
    password = secrets.new("password")
    admin.set_password(password)
    admin.save()
    make_prompt(admin, versions=2)
    admin_key = secrets.add(make_key(admin, "admin"))
    webhook_create(actor=actor_for(admin, admin=True), url=webhook_receiver.url, secret=secrets.new("hook"))

    with service(tmp_path, **ENV) as live:
        api = f"{live.web}/api/v1"
        as_admin = {"Authorization": f"Bearer {admin_key}"}
        created = requests.post(
            f"{api}/keys",
            json={"name": "app", "scopes": ["read", "ingest", "write"]},
            headers=as_admin,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        key = secrets.add(created.json()["key"])
        bearer = {"Authorization": f"Bearer {key}"}
        # A rollout started over HTTP: its webhook is delivered by the worker (a task the request queued).
        started = requests.post(
            f"{api}/prompts/support.answer/rollouts",
            json={"candidate_version": 2, "plan": PLAN},
            headers=bearer,
            timeout=10,
        )
        assert started.status_code == 201, started.text
        for _ in range(3):
            unit, attribute = secrets.new("unit"), secrets.new("attr")
            resolved = requests.get(  # the fast path (a Bearer key)
                f"{api}/prompts/support.answer/resolve",
                params={"unit": unit, "attr.plan": attribute},
                headers=bearer,
                timeout=10,
            )
            assert resolved.status_code == 200
            rendered = requests.post(
                f"{api}/prompts/support.answer/render",
                json={
                    "unit": unit,
                    "variables": {"question": secrets.new("var"), "customer": secrets.new("var")},
                },
                headers=bearer,
                timeout=10,
            )
            assert rendered.status_code == 200, rendered.text
        wrong = secrets.add(f"pr_{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex}")
        assert (
            requests.get(
                f"{api}/prompts/support.answer/resolve",
                headers={"Authorization": f"Bearer {wrong}"},
                timeout=10,
            ).status_code
            == 401
        )
        assert (
            requests.get(
                f"{api}/prompts", headers={"Authorization": f"Bearer {wrong}"}, timeout=10
            ).status_code
            == 401
        )
        event = {"event_id": str(uuid.uuid4()), "prompt": "support.answer", "version": 1, "latency_ms": 5.0}
        events = requests.post(f"{api}/events", json={"events": [event]}, headers=bearer, timeout=10)
        assert events.status_code == 202, events.text
        celery_app.send_task("outcomes.flush")
        # The Django view of resolve: a session, from the admin's login.
        session = requests.Session()
        session.get(f"{live.web}/admin/login/", timeout=10)
        login = session.post(
            f"{live.web}/admin/login/?next=/admin/",
            data={
                "username": "leak-admin",
                "password": password,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": f"{live.web}/admin/login/"},
            timeout=10,
        )
        assert login.status_code == 200 and "/admin/login/" not in login.url
        unit = secrets.new("unit")
        assert (
            session.get(
                f"{api}/prompts/support.answer/resolve", params={"unit": unit}, timeout=10
            ).status_code
            == 200
        )
        assert session.get(f"{live.web}/admin/access/apikey/", timeout=10).status_code == 200
        reader = SSEReader(live.stream, key, traceparent=f"00-{STREAM_TRACE}-00f067aa0ba902b7-01")
        assert reader.headers["traceparent"].startswith(f"00-{STREAM_TRACE}-")
        reader.next_event("snapshot")
        reader.close()
        webhook_receiver.wait_for(1)
        wait_for(lambda: '"task":"outcomes.flush"' in worker.read_text(), seconds=30)
        wait_for(lambda: '"task":"rollouts.deliver_webhooks"' in worker.read_text(), seconds=30)
        wait_for(lambda: "api/v1/snapshot/stream" in (tmp_path / "stream.log").read_text(), seconds=10)

    written = {path.name: path.read_text() for path in tmp_path.glob("*.log")}
    assert set(written) == {"web.log", "stream.log", "worker.log"}
    found = [(name, value) for name, text in written.items() for value in secrets.values if value in text]
    assert found == []
    # The logs were written, and are the lines they should be: each request of the run is there.
    lines = [
        orjson.loads(line) for text in written.values() for line in text.splitlines() if line.startswith("{")
    ]
    routes = {(line["route"], line["status"]) for line in lines if "route" in line}
    assert {
        ("api/v1/keys", 201),
        ("api/v1/prompts/<str:name>/rollouts", 201),
        ("api/v1/prompts/<str:name>/resolve", 200),
        ("api/v1/prompts/<str:name>/resolve", 401),
        ("api/v1/prompts/<str:name>/render", 200),
        ("api/v1/events", 202),
        ("api/v1/snapshot/stream", 200),
        ("admin/login/", 302),
    } <= routes
    assert any(line["level"] == "debug" for line in lines)
    assert [line["trace_id"] for line in lines if line.get("route") == "api/v1/snapshot/stream"] == [
        STREAM_TRACE
    ]
    assert not [
        line for line in lines if "succeeded in" in line.get("message", "")
    ]  # Celery's, with the result
    assert {
        line["key_prefix"] for line in lines if line.get("route") == "api/v1/prompts/<str:name>/render"
    } == {key[:11]}
    started_trace = next(
        line["trace_id"] for line in lines if line.get("route") == "api/v1/prompts/<str:name>/rollouts"
    )
    assert any(
        line.get("task") == "rollouts.deliver_webhooks" and line["trace_id"] == started_trace
        for line in lines
    )
