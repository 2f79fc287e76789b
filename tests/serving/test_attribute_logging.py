"""Caller attributes are never logged: with ACCESS_LOG=1, neither web server writes a query
string (units, attr.NAME values) to its log, through the fast path or Django's view."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.factories import make_key, make_prompt
from tests.servers import base_env, database_url, web_server
from tests.serving.bursts import request

SECRET = "tenant-only-the-caller-knows"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_access_logs_hold_no_attribute_value(alice, tmp_path, server):
    make_prompt(alice)
    key = make_key(alice, "read")
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), ACCESS_LOG="1", WEB_SERVER=server)
    log = tmp_path / "web.log"
    with web_server(env, log, workers=1) as url:
        path = f"/api/v1/prompts/support.answer/resolve?unit=u&attr.tenant={SECRET}"
        assert request(url, "GET", path, key=key).status == 200  # the fast path
        assert request(url, "GET", path).status == 401  # on to Django: no session
        assert request(url, "GET", path.replace("attr.tenant", "attr.BAD"), key=key).status == 400
    text = log.read_text()
    assert "/api/v1/prompts/support.answer/resolve" in text  # the access log is on
    assert SECRET not in text
