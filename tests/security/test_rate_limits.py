"""Rate limits from the attacker's side: a key (or, without one, a client address) that sends
more requests per second than its limit gets 429 `rate_limited` with Retry-After, on Django's
views, on the resolve fast path and on the stream's connects, across processes; a forged
X-Forwarded-For does not buy a fresh budget. Wrong keys count against the client address, so
keys cannot be tried faster than that address's limit, on a counter apart from the address's
requests without a key (sessions). The 429s answer as the OpenAPI schema describes them."""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlsplit

import pytest
import schemathesis
from django.db import connection
from django.test import Client as DjangoClient
from schemathesis import checks

from access.models import ApiKey
from access.services import apikey_revoke, hash_key
from core.actors import Actor
from core.rate_limits import rate_limiter
from core.redis_client import get_redis
from promptramp import Client
from tests.factories import make_key, make_prompt
from tests.outcomes.conftest import clear_ingest_keys
from tests.security.limits import at_the_start_of_a_second, in_one_second, request
from tests.servers import Reply, base_env, database_url, web_server
from tests.serving.stream_helpers import STREAM_PATH, service

LIMITS_OFF = {"serve": 0, "events": 0, "api": 0}
SCHEMA_CHECKS = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
RESOLVE = "/api/v1/prompts/support.answer/resolve?unit=user-1"
MADE_UP_KEY = "pr_madeup00_" + "0" * 40
NAT = "198.51.100.20"  # one address for every user behind it


@pytest.fixture(autouse=True)
def _limits_back_off_for_the_next_test(settings):
    """The limiter reads its limits once a second: the next test starts in a later second, when
    the settings are restored (this fixture ends before ``settings`` does)."""
    yield
    at_the_start_of_a_second()


@pytest.mark.django_db
def test_a_key_over_its_api_rate_gets_429_rate_limited_with_retry_after(alice, client_with_key, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 3}
    attacker, other = client_with_key(alice, "read"), client_with_key(alice, "read")

    answers = in_one_second(lambda: [attacker.get("/api/v1/prompts") for _ in range(5)])

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429]
    assert answers[3].json()["error"]["code"] == "rate_limited"
    assert answers[3]["Retry-After"] == "1"
    assert other.get("/api/v1/prompts").status_code == 200  # the limit is the key's


@pytest.mark.django_db
def test_event_batches_over_the_events_rate_get_429(alice, client_with_key, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "events": 2}
    client = client_with_key(alice, "ingest")

    statuses = in_one_second(
        lambda: [client.post("/api/v1/events", {"events": []}, format="json").status_code for _ in range(3)]
    )

    assert statuses[2] == 429
    assert 429 not in statuses[:2]


def _get_prompts(client, peer: str, forwarded_for: str) -> int:
    answer = client.get("/api/v1/prompts", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded_for)
    return int(answer.status_code)


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_buy_a_fresh_budget(alice, client, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 2}
    settings.PROMPTRAMP_TRUSTED_PROXIES = ["10.0.0.1"]
    client.force_login(alice)  # a session: counted by client address

    statuses = in_one_second(
        lambda: [_get_prompts(client, "198.51.100.9", f"203.0.113.{n}") for n in range(4)]
    )

    assert statuses == [200, 200, 429, 429]


@pytest.mark.django_db
def test_behind_a_trusted_proxy_each_client_address_has_its_own_budget(alice, client, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 2}
    settings.PROMPTRAMP_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client.force_login(alice)

    first, second = in_one_second(
        lambda: (
            [_get_prompts(client, "10.0.0.1", "192.0.2.1, 10.0.0.2") for _ in range(3)],
            [_get_prompts(client, "10.0.0.1", "192.0.2.2") for _ in range(2)],
        )
    )

    assert first == [200, 200, 429]
    assert second == [200, 200]


@pytest.mark.django_db
def test_a_process_refuses_past_its_limit_while_it_tells_redis_its_count(settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 3}
    at_the_start_of_a_second()
    admitted = [rate_limiter.retry_after("api", "address:192.0.2.9") for _ in range(3)]
    telling = threading.Thread(target=rate_limiter.exchange)

    telling.start()
    meanwhile = []
    while telling.is_alive():
        meanwhile.append(rate_limiter.retry_after("api", "address:192.0.2.9"))
    telling.join()
    afterwards = rate_limiter.retry_after("api", "address:192.0.2.9")

    assert admitted == [None] * 3
    assert None not in meanwhile  # the admissions being sent still count here
    assert afterwards == 1


def _revoked_key(user) -> str:  # type: ignore[no-untyped-def]
    raw = make_key(user, "read")
    apikey_revoke(actor=Actor.system(), key_id=ApiKey.objects.get(key_hash=hash_key(raw)).pk)
    return raw


def _wrong_keys(user) -> list[str]:  # type: ignore[no-untyped-def]
    """Unknown, revoked and malformed (too long) keys, five in all."""
    return [MADE_UP_KEY, _revoked_key(user), "x" * 300, MADE_UP_KEY, _revoked_key(user)]


@pytest.mark.django_db
def test_wrong_keys_from_one_address_get_401_until_its_api_rate_then_429(alice, client, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 3}
    settings.PROMPTRAMP_TRUSTED_PROXIES = ["10.0.0.1"]
    wrong, valid = _wrong_keys(alice), make_key(alice, "read")

    def get(key: str, address: str):  # type: ignore[no-untyped-def]
        return client.get(
            "/api/v1/prompts",
            HTTP_AUTHORIZATION=f"Bearer {key}",
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR=address,
        )

    answers, with_valid_key, from_elsewhere = in_one_second(
        lambda: (
            [get(key, "192.0.2.1") for key in wrong],
            get(valid, "192.0.2.1"),
            get(MADE_UP_KEY, "192.0.2.2"),
        )
    )

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429, 429]
    assert answers[3].json()["error"]["code"] == "rate_limited"
    assert answers[3]["Retry-After"] == "1"
    assert with_valid_key.status_code == 200  # a valid key is counted on the key only
    assert from_elsewhere.status_code == 401  # another client address has its own budget


def _prompts_from_nat(client, key: str | None = None) -> int:  # type: ignore[no-untyped-def]
    headers = {} if key is None else {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    return int(client.get("/api/v1/prompts", REMOTE_ADDR=NAT, **headers).status_code)


@pytest.mark.django_db
def test_wrong_keys_over_their_limit_leave_the_sessions_of_their_address_answered(alice, client, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 3}
    client.force_login(alice)  # a signed-in user behind the same address as a broken client
    broken = DjangoClient()

    wrong, session = in_one_second(
        lambda: (
            [_prompts_from_nat(broken, MADE_UP_KEY) for _ in range(5)],
            [_prompts_from_nat(client) for _ in range(4)],
        )
    )

    assert wrong == [401, 401, 401, 429, 429]
    assert session == [200, 200, 200, 429]  # the session's budget is whole, and still a limit


@pytest.mark.django_db
def test_a_busy_session_does_not_make_its_users_mistyped_key_429(alice, client, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 3}
    client.force_login(alice)

    session, mistyped = in_one_second(
        lambda: (
            [_prompts_from_nat(client) for _ in range(4)],
            [_prompts_from_nat(client, MADE_UP_KEY) for _ in range(4)],
        )
    )

    assert session == [200, 200, 200, 429]
    assert mistyped == [401, 401, 401, 429]  # 429 only at the wrong keys' own limit


def _mget_calls() -> int:
    return int(get_redis().info("commandstats").get("cmdstat_mget", {}).get("calls", 0))


@pytest.mark.django_db
def test_past_its_limit_an_address_made_up_keys_cost_no_confirmation_in_redis(alice, client, settings):
    settings.PROMPTRAMP_RATE_LIMITS = {**LIMITS_OFF, "api": 2}
    make_key(alice, "read")  # the keys' state is built before the burst

    def flood() -> tuple[list[int], int]:
        spent = [client.get("/api/v1/prompts", HTTP_AUTHORIZATION=f"Bearer {MADE_UP_KEY}") for _ in range(2)]
        before = _mget_calls()
        refused = [
            client.get("/api/v1/prompts", HTTP_AUTHORIZATION=f"Bearer pr_madeup00_{n:040d}").status_code
            for n in range(20)
        ]
        return [answer.status_code for answer in spent] + refused, _mget_calls() - before

    statuses, counter_reads = in_one_second(flood)

    assert statuses == [401, 401] + [429] * 20
    # A confirmed miss reads the keys' counter (one MGET); the periodic check of a state cache
    # (every half second) may read it once or twice in the meantime, never once per request.
    assert counter_reads < 5


@pytest.mark.django_db(transaction=True)
def test_wrong_keys_on_the_fast_path_count_against_the_client_address(alice, tmp_path):
    make_prompt(alice)
    wrong, valid = _wrong_keys(alice), make_key(alice, "read")
    env = base_env(
        DATABASE_URL=database_url(connection.settings_dict),
        PROMPTRAMP_RATE_SERVE="3",
        PROMPTRAMP_TRUSTED_PROXIES="127.0.0.1",
    )

    with web_server(env, tmp_path / "web.log", workers=1) as url:

        def resolve(key: str, address: str) -> Reply:
            return request(
                url + RESOLVE, headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": address}
            )

        replies, with_valid_key, from_elsewhere = in_one_second(
            lambda: (
                [resolve(key, "192.0.2.1") for key in wrong],
                resolve(valid, "192.0.2.1"),
                resolve(MADE_UP_KEY, "192.0.2.2"),
            )
        )

    assert [reply.status for reply in replies] == [401, 401, 401, 429, 429]
    assert replies[3].body["error"]["code"] == "rate_limited"
    assert replies[3].headers["Retry-After"] == "1"
    assert with_valid_key.status == 200
    assert from_elsewhere.status == 401


@pytest.mark.django_db(transaction=True)
def test_resolve_on_the_fast_path_is_limited_across_web_processes(alice, tmp_path):
    make_prompt(alice)
    bearer = {"Authorization": f"Bearer {make_key(alice, 'read')}"}
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), PROMPTRAMP_RATE_SERVE="5")

    with (
        web_server(env, tmp_path / "a.log", workers=1) as first,
        web_server(env, tmp_path / "b.log", workers=1) as second,
    ):
        burst = in_one_second(lambda: [request(first + RESOLVE, headers=bearer) for _ in range(7)])

        def spend_then_elsewhere() -> tuple[list[int], Reply]:
            spent = [request(first + RESOLVE, headers=bearer).status for _ in range(5)]
            time.sleep(0.3)  # the first process has told Redis (every 100 ms)
            request(second + RESOLVE, headers=bearer)  # the second may admit until it has asked Redis
            time.sleep(0.3)
            return spent, request(second + RESOLVE, headers=bearer)

        spent, elsewhere = in_one_second(spend_then_elsewhere)

    assert [reply.status for reply in burst] == [200] * 5 + [429] * 2
    assert burst[5].body["error"]["code"] == "rate_limited"
    assert burst[5].headers["Retry-After"] == "1"
    assert spent == [200] * 5
    assert elsewhere.status == 429  # the second process refuses the key the first one spent


def _connect(stream: str, key: str) -> int:
    """The status a stream connect is answered with (the connection is closed at once)."""
    parts = urlsplit(stream)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", STREAM_PATH, headers={"Authorization": f"Bearer {key}"})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_stream_connects_over_the_serve_rate_get_429(alice, tmp_path):
    make_prompt(alice)
    key = make_key(alice, "read")

    with service(tmp_path, PROMPTRAMP_RATE_SERVE="2") as running:
        statuses = in_one_second(lambda: [_connect(running.stream, key) for _ in range(3)])

    assert statuses == [200, 200, 429]


@pytest.mark.django_db(transaction=True)
def test_the_sdk_waits_out_the_servers_429_and_delivers_every_event(alice, tmp_path):
    make_prompt(alice)
    key = make_key(alice, "read,ingest")
    env = base_env(DATABASE_URL=database_url(connection.settings_dict), PROMPTRAMP_RATE_EVENTS="1")

    with web_server(env, tmp_path / "web.log", workers=1) as url:
        client = Client(url, key, stream=False, batch_size=1, flush_interval=0.05, max_backoff=0.3)
        try:
            resolved = client.get("support.answer", unit="user-1")
            for _ in range(3):
                client.report(resolved, latency_ms=12.0)
            delivered = client.flush(timeout=10)
            counts = client.event_counts()
        finally:
            client.close()
            clear_ingest_keys()  # Redis outlives the test's rows: no aggregate of a prompt that is gone

    assert delivered
    assert (counts.accepted, counts.rejected, counts.dropped) == (3, 0, 0)
    assert counts.retries >= 1  # one batch a second: the others were answered 429 and sent again


@pytest.mark.django_db(transaction=True)
def test_stream_connects_with_wrong_keys_over_the_serve_rate_get_429(alice, tmp_path):
    make_prompt(alice)
    wrong, valid = _wrong_keys(alice), make_key(alice, "read")

    with service(tmp_path, PROMPTRAMP_RATE_SERVE="2") as running:
        statuses, with_valid_key = in_one_second(
            lambda: ([_connect(running.stream, key) for key in wrong[:3]], _connect(running.stream, valid))
        )

    assert statuses == [401, 401, 429]
    assert with_valid_key == 200


@pytest.mark.django_db(transaction=True)
def test_429s_answer_as_the_schema_describes_them(alice, client, tmp_path):
    make_prompt(alice)
    schema = schemathesis.openapi.from_dict(
        client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    )
    reader = {"Authorization": f"Bearer {make_key(alice, 'read')}"}
    ingester = {"Authorization": f"Bearer {make_key(alice, 'ingest')}"}
    wrong_key = {"Authorization": f"Bearer {MADE_UP_KEY}", "X-Forwarded-For": "192.0.2.7"}
    resolve, prompts = schema["/api/v1/prompts/{name}/resolve"]["GET"], schema["/api/v1/prompts"]["GET"]
    events = schema["/api/v1/events"]["POST"]
    bursts = {  # what is refused: the request, and the statuses three of them get in a second
        "resolve on the fast path, per key (serve: 2)": (
            resolve.Case(path_parameters={"name": "support.answer"}, query={"unit": "u-1"}, headers=reader),
            [200, 200, 429],
        ),
        "a Django view, per key (api: 2)": (prompts.Case(headers=reader), [200, 200, 429]),
        "event batches, per key (events: 1)": (
            events.Case(body={"events": []}, media_type="application/json", headers=ingester),
            [202, 429, 429],
        ),
        "wrong keys, per client address (api: 2)": (prompts.Case(headers=wrong_key), [401, 401, 429]),
    }
    env = base_env(
        DATABASE_URL=database_url(connection.settings_dict),
        PROMPTRAMP_RATE_SERVE="2",
        PROMPTRAMP_RATE_API="2",
        PROMPTRAMP_RATE_EVENTS="1",
        PROMPTRAMP_TRUSTED_PROXIES="127.0.0.1",
    )

    with web_server(env, tmp_path / "web.log", workers=1) as url:
        answered = {
            what: in_one_second(lambda case=case: [case.call(base_url=url) for _ in range(3)])
            for what, (case, _) in bursts.items()
        }

    for what, (case, statuses) in bursts.items():
        replies = answered[what]
        assert [reply.status_code for reply in replies] == statuses, what
        refused = replies[-1]
        assert refused.json()["error"]["code"] == "rate_limited", what
        assert refused.headers["retry-after"] == ["1"], what
        for reply in replies:  # the 401s of wrong keys (WWW-Authenticate) too
            case.validate_response(reply, checks=SCHEMA_CHECKS)
