from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from core.redis_client import get_redis
from core.state_cache import StateCache
from outcomes.event_targets import rollouts_cache, versions_cache
from tests.factories import UserFactory, make_key

hypothesis_settings.register_profile("ci", deadline=None, max_examples=200)
hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session", autouse=True)
def _clean_redis(django_db_blocker: Any) -> None:
    """Tests run on Redis databases of their own (see devstack.stack.test); start them empty."""
    get_redis().flushdb()


@pytest.fixture(autouse=True)
def _fresh_state_caches() -> Iterator[None]:
    for cache in StateCache.instances:
        cache.clear()
    versions_cache.clear()
    rollouts_cache.clear()
    yield


@pytest.fixture
def admin_user(db: None) -> Any:
    return UserFactory(username="root", is_superuser=True)


@pytest.fixture
def alice(db: None) -> Any:
    return UserFactory(username="alice")


@pytest.fixture
def bob(db: None) -> Any:
    return UserFactory(username="bob")


@pytest.fixture
def client_with_key() -> Callable[..., APIClient]:
    """client_with_key(user, "read,write") -> an APIClient sending a fresh key of those scopes."""

    def make(user: Any, scopes: str = "read") -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_key(user, scopes)}")
        return client

    return make


@pytest.fixture
def redis_url() -> str:
    return str(settings.REDIS_URL)
