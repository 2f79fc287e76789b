"""Safe defaults from the attacker's side: a request naming another Host is refused by Django,
the resolve fast path and the stream (ALLOWED_HOSTS: loopback names unless
PROMPTRAMP_ALLOWED_HOSTS says otherwise); /metrics needs PROMPTRAMP_METRICS_TOKEN when it is set;
with PROMPTRAMP_SECURE=1, plain HTTP gets a redirect, not an answer, and cookies are Secure."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest
from django.db import connection

from tests.factories import make_key, make_prompt
from tests.security.limits import request
from tests.servers import base_env, database_url, web_server
from tests.serving.stream_helpers import STREAM_PATH, service

RESOLVE = "/api/v1/prompts/support.answer/resolve?unit=user-1"


@pytest.mark.django_db
def test_django_refuses_a_host_that_is_not_ours(alice, client_with_key):
    answer = client_with_key(alice, "read").get("/api/v1/prompts", HTTP_HOST="evil.example")

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"


def _stream_status(stream: str, key: str, host: str) -> int:
    parts = urlsplit(stream)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", STREAM_PATH, headers={"Authorization": f"Bearer {key}", "Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_the_fast_path_and_the_stream_refuse_a_host_that_is_not_ours(alice, tmp_path):
    make_prompt(alice)
    key = make_key(alice, "read")
    bearer = {"Authorization": f"Bearer {key}"}

    with service(tmp_path) as running:
        port = urlsplit(running.web).port
        evil = request(running.web + RESOLVE, headers={**bearer, "Host": "evil.example"})
        ours = [
            request(running.web + RESOLVE, headers={**bearer, "Host": f"{name}:{port}"})
            for name in ("localhost", "127.0.0.1")
        ]
        stream_evil = _stream_status(running.stream, key, "evil.example")
        stream_ours = _stream_status(running.stream, key, f"localhost:{running.stream_port}")

    assert evil.status == 400
    assert evil.body["error"]["code"] == "bad_request"
    assert [reply.status for reply in ours] == [200, 200]  # loopback names keep working
    assert stream_evil == 400
    assert stream_ours == 200


@pytest.mark.django_db  # /metrics reads the active rollouts and the outbox backlog
def test_metrics_without_the_token_is_401(client, settings):
    settings.PROMPTRAMP_METRICS_TOKEN = "scrape-secret"

    missing = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secreT")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.json()["error"]["code"] == "unauthenticated"
    assert right.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_with_secure_plain_http_is_redirected_and_cookies_are_secure(alice, tmp_path):
    make_prompt(alice)
    bearer = {"Authorization": f"Bearer {make_key(alice, 'read')}"}
    env = base_env(
        DATABASE_URL=database_url(connection.settings_dict),
        PROMPTRAMP_SECURE="1",
        PROMPTRAMP_TRUSTED_PROXIES="127.0.0.1",
    )

    with web_server(env, tmp_path / "web.log", workers=1) as url:
        plain = _no_redirect(url + RESOLVE, bearer)
        proxied = request(url + RESOLVE, headers={**bearer, "X-Forwarded-Proto": "https"})
        login_page = _no_redirect(url + "/admin/login/", {"X-Forwarded-Proto": "https"})

    assert plain.status == 301  # the key got no answer over plain HTTP
    assert plain.getheader("Location").startswith("https://")
    assert proxied.status == 200
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in login_page.getheader("Set-Cookie")  # the CSRF cookie


def _no_redirect(url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response
