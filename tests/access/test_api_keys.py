import os
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from access import selectors
from access.models import ApiKey
from access.selectors import apikey_lookup
from access.services import apikey_revoke, hash_key
from audit.models import AuditEntry
from core.actors import Actor
from tests.factories import make_key

KEYS = "/api/v1/keys"


def bearer(raw):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def root_api(admin_user, client_with_key):
    return client_with_key(admin_user, "admin")


@pytest.mark.django_db
def test_an_admin_creates_a_key_that_is_shown_once_and_works_with_its_scopes(root_api, bob):
    response = root_api.post(KEYS, {"name": "bob's laptop", "user": "bob", "scopes": ["read"]})

    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["key"].startswith(created["prefix"] + "_")
    assert (created["name"], created["user"], created["scopes"]) == ("bob's laptop", "bob", ["read"])
    assert created["revoked_at"] is None
    listed = root_api.get(KEYS).json()["results"]
    assert [k["name"] for k in listed] == ["bob's laptop", "test"]
    assert all("key" not in k for k in listed)
    assert bearer(created["key"]).get("/api/v1/prompts").status_code == 200
    assert bearer(created["key"]).post("/api/v1/prompts", {"name": "x"}).status_code == 403


@pytest.mark.django_db
def test_a_key_is_made_for_the_caller_when_no_user_is_named(root_api):
    response = root_api.post(KEYS, {"name": "mine", "scopes": ["read", "write"]})

    assert response.status_code == 201
    assert response.json()["user"] == "root"
    assert response.json()["scopes"] == ["read", "write"]


@pytest.mark.django_db
def test_keys_are_stored_as_hashes_only(root_api, bob):
    raw = root_api.post(KEYS, {"name": "k", "user": "bob", "scopes": ["read"]}).json()["key"]
    secret = raw.split("_", 2)[2]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM access_apikey")
        table = repr(cursor.fetchall())

    assert raw not in table
    windows = {secret[i : i + 8] for i in range(len(secret) - 7)}
    assert not [window for window in windows if window in table]
    assert len(secret) >= 40


@pytest.mark.django_db
def test_a_key_revoked_through_the_api_stops_working_at_once(root_api, alice):
    raw = make_key(alice, "read")
    api = bearer(raw)
    assert api.get("/api/v1/prompts").status_code == 200
    key_id = ApiKey.objects.get(user=alice).pk

    response = root_api.delete(f"{KEYS}/{key_id}", {"reason": "laptop lost"})

    assert response.status_code == 200
    assert response.json()["revoked_at"] is not None
    refused = api.get("/api/v1/prompts")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    entry = AuditEntry.objects.get(action="apikey.revoke")
    assert (entry.actor_name, entry.via, entry.reason) == ("root", "key:test", "laptop lost")


@pytest.mark.django_db
def test_revoking_an_unknown_key_answers_404(root_api):
    response = root_api.delete(f"{KEYS}/999999")

    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", ["read", "write", "read,write,ingest"])
@pytest.mark.parametrize(("method", "path"), [("get", KEYS), ("post", KEYS), ("delete", f"{KEYS}/1")])
def test_keys_are_for_admins_only(client_with_key, alice, scopes, method, path):
    api = client_with_key(alice, scopes)
    before = ApiKey.objects.count()

    response = getattr(api, method)(path, {"name": "x", "scopes": ["admin"]} if method == "post" else None)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert ApiKey.objects.count() == before
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["read"]},
        {"name": "", "scopes": ["read"]},
        {"name": "x" * 101, "scopes": ["read"]},
        {"name": 5, "scopes": ["read"]},
        {"name": "k"},
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": "read"},
        {"name": "k", "scopes": ["root"]},
        {"name": "k", "scopes": [1]},
        {"name": "k", "scopes": None},
        {"name": "k", "scopes": ["read"], "user": "nobody"},
        {"name": "k", "scopes": ["read"], "user": 3},
        {"name": "k", "scopes": ["read"], "user": None},
        {"name": "k", "scopes": ["read"], "expires": "never"},
        ["read"],
    ],
)
def test_a_bad_key_request_answers_400_and_creates_nothing(root_api, body):
    before = ApiKey.objects.count()

    response = root_api.post(KEYS, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert ApiKey.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer pr_nope", "Bearer " + "x" * 300, "Basic YWxpY2U6cHc=", "Bearer \u00e9\u00e9"],
)
def test_a_missing_or_invalid_key_answers_401(alice, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/prompts")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# --- revocation reaches other processes -----------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_of_the_test_database():
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"postgresql://{quote(db['USER'], safe='')}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def other_process(transactional_db):
    """A gunicorn web process of its own, on the test database and Redis."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_the_test_database(),
        "REDIS_URL": str(settings.REDIS_URL),
        "SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_CONN_MAX_AGE": "0",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, "the web process exited"
            assert time.monotonic() < deadline, "the web process did not start"
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_a_revoked_key_stops_working_in_another_process_within_a_second(other_process, alice):
    raw = make_key(alice, "read")
    headers = {"Authorization": f"Bearer {raw}"}
    assert requests.get(f"{other_process}/api/v1/prompts", headers=headers, timeout=5).status_code == 200

    apikey_revoke(actor=Actor.system(), key_id=ApiKey.objects.get(user=alice).pk)
    revoked_at = time.monotonic()
    sent = []  # (seconds after the revocation when the request was sent, its status)
    while time.monotonic() - revoked_at < 3:
        sent_after = time.monotonic() - revoked_at
        status = requests.get(f"{other_process}/api/v1/prompts", headers=headers, timeout=5).status_code
        sent.append((sent_after, status))
        if status == 401:
            break

    first_refused_after, last_status = sent[-1]
    assert last_status == 401
    assert first_refused_after <= 1.0
    assert {status for _, status in sent[:-1]} <= {200}


@pytest.mark.django_db
def test_only_keys_found_valid_have_their_digest_remembered(alice):
    raw = make_key(alice, "read")
    made_up = [f"pr_madeup00_{number:040d}" for number in range(20)]

    for key in [raw, *made_up]:
        apikey_lookup(key, {"REMOTE_ADDR": "127.0.0.1"}, "api")

    assert selectors._known_digests[raw] == hash_key(raw)
    assert not set(made_up) & set(selectors._known_digests)
