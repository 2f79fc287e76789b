"""Fixtures of the SDK tests.

The contract tests (test_contract.py) talk to `base_url` with `api_key`: by default a local
FakeServer seeded with `DEMO_PROMPTS`; set PROMPTRAMP_TEST_BASE_URL and PROMPTRAMP_TEST_API_KEY
to run them against a real promptramp server instead. Fault tests always use their own
FakeServer, since they script its failures.
"""

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from promptramp import Client
from tests.serving import vectors

from .fake_server import API_KEY, DEMO_PROMPTS, FakeServer


@pytest.fixture(scope="session")
def bucketing_vectors() -> list[dict[str, Any]]:
    """tests/data/bucketing_vectors.json, the vectors the server's tests use too."""
    return vectors.bucketing_vectors()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    server.set_prompts(DEMO_PROMPTS)
    yield server
    server.stop()


@pytest.fixture
def base_url() -> Iterator[str]:
    configured = os.environ.get("PROMPTRAMP_TEST_BASE_URL")
    if configured:
        yield configured
        return
    server = FakeServer()
    server.set_prompts(DEMO_PROMPTS)
    yield server.base_url
    server.stop()


@pytest.fixture
def api_key() -> str:
    return os.environ.get("PROMPTRAMP_TEST_API_KEY", API_KEY)


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """Build clients (no periodic refresh unless asked); each is closed at the end of the test."""
    clients: list[Client] = []

    def make(base_url: str, api_key: str = API_KEY, **options: Any) -> Client:
        client = Client(base_url, api_key, **{"refresh_interval": 3600, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=1)
