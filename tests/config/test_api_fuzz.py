"""Every operation of the OpenAPI schema, fuzzed by schemathesis against a live server on real
PostgreSQL and Redis: no answer is a 5xx, and answers match the schema.

Each operation starts from the same stored objects (prompts with versions and labels, running,
pending and rolled-back rollouts with outcomes, a webhook, API keys); path parameters name them
part of the time. The run is derandomized: the same code sends the same requests.
``FUZZ_MAX_EXAMPLES=500 make test ARGS=tests/config/test_api_fuzz.py`` fuzzes harder.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from django.test import Client
from django.test.testcases import LiveServerThread
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks

from access.services import apikey_create
from core.actors import Actor
from outcomes.services import events_ingest, outcome_minutes_flush
from registry.services import label_move
from rollouts.services import rollout_create, rollout_rollback
from rollouts.webhooks import webhook_create
from serving.fast_path import resolve_fast_path
from serving.stream_asgi import STREAM_PATH
from tests.factories import actor_for, make_key, make_prompt
from tests.outcomes.conftest import clear_ingest_keys

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.unsupported_method,
    checks.ignored_auth,
]

# Read at collection, before pytest-django allows the test client's host ("testserver").
raw_schema = (
    Client(HTTP_HOST="localhost")
    .get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    .json()
)
# Every operation but the snapshot stream's: the stream process serves it, not this web server
# (404 here), and a request it accepts answers a stream that does not end. Its answers are
# checked against the schema on a real stream process in tests/serving/test_snapshot_stream.py.
schema = schemathesis.openapi.from_dict(raw_schema).exclude(path=STREAM_PATH)

# Path parameter values naming stored objects, per parameter name, and the fuzzer's own key;
# set by the fixtures before an operation's examples are generated, constant while they are.
STORED: dict[str, list[Any]] = {}
FUZZER_KEY_ID: list[int] = []


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    if not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {name: st.sampled_from([value, *STORED.get(name, [])]) for name, value in path_parameters.items()}
    )


@schema.hook
def filter_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> bool:
    """The fuzzer does not revoke its own key."""
    return not path_parameters or path_parameters.get("key_id") not in FUZZER_KEY_ID


def report_outcomes(rollout_id: int) -> None:
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "prompt": "support.answer",
            "version": version,
            "rollout_id": rollout_id,
            "arm": arm,
            "latency_ms": 700.0 + n,
            "error": n % 10 == 0,
            "cost_usd": 0.002,
            "scores": {"helpfulness": 0.8},
        }
        for n in range(20)
        for arm, version in (("baseline", 1), ("candidate", 2))
    ]
    events_ingest(body=orjson.dumps({"events": events}), now=time.time())
    outcome_minutes_flush()


@pytest.fixture
def stored(admin_user: Any, alice: Any, settings: Any) -> Iterator[None]:
    # Webhook URLs are not resolved at creation (a fuzzed name must not reach DNS).
    settings.PROMPTRAMP_WEBHOOK_ALLOW_PRIVATE = True
    owner = actor_for(alice)
    make_prompt(alice, name="support.answer", versions=3)
    make_prompt(alice, name="support.chat", kind="chat", versions=2)
    make_prompt(alice, name="support.idle", versions=2)
    label_move(actor=owner, prompt_name="support.answer", label="staging", version=3)
    ended = rollout_create(actor=owner, prompt_name="support.answer", candidate_version=3)
    rollout_rollback(actor=owner, rollout_id=ended.pk, reason="seeded")
    running = rollout_create(actor=owner, prompt_name="support.answer", candidate_version=2)
    pending = rollout_create(actor=owner, prompt_name="support.chat", candidate_version=2, start=False)
    report_outcomes(running.pk)
    webhook = webhook_create(actor=actor_for(admin_user), url="http://127.0.0.1:9/hook", secret="fuzz-secret")
    make_key(alice, "read")
    STORED.update(
        name=["support.answer", "support.chat", "support.idle"],
        number=[1, 2, 3],
        label=["production", "staging"],
        rollout_id=[ended.pk, running.pk, pending.pk],
        webhook_id=[webhook.pk],
        key_id=[alice.api_keys.get().pk],
    )
    yield
    STORED.clear()
    clear_ingest_keys()


@pytest.fixture
def fuzzer_key(admin_user: Any, stored: None) -> str:
    """A key with every scope, of an admin."""
    key, raw = apikey_create(
        actor=Actor.system(), name="fuzzer", user=admin_user, scopes=["read", "ingest", "write", "admin"]
    )
    FUZZER_KEY_ID[:] = [key.pk]
    return raw


@pytest.fixture(scope="session")
def web_server() -> Iterator[str]:
    """A live server of the WSGI application gunicorn serves (Bearer resolves take its short way,
    serving.fast_path); its base URL."""
    thread = LiveServerThread("127.0.0.1", static_handler=resolve_fast_path)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_no_operation_answers_a_server_error(case: Any, web_server: str, fuzzer_key: str) -> None:
    case.call_and_validate(
        base_url=web_server, headers={"Authorization": f"Bearer {fuzzer_key}"}, checks=CHECKS
    )


def test_every_operation_documents_its_errors():
    for path, operations in raw_schema["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"401", "403"} <= documented, f"{method.upper()} {path}"
            if "requestBody" in operation:
                assert "400" in documented and "413" in documented, f"{method.upper()} {path}"
