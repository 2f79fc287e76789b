from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.redis_client import get_redis
from outcomes.pending import PREFIX
from registry.models import Prompt
from rollouts.models import Rollout
from tests.factories import make_prompt

EVENTS_URL = "/api/v1/events"


def clear_ingest_keys() -> None:
    client = get_redis()
    keys = list(client.scan_iter(match=PREFIX + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_ingest_state() -> Iterator[None]:
    """Redis outlives each test's rolled-back transaction: no aggregate of a row that is gone."""
    clear_ingest_keys()
    yield
    clear_ingest_keys()


@dataclass
class Setup:
    prompt: Prompt
    rollout: Rollout


def make_rollout(prompt: Prompt, *, state: str = Rollout.State.RUNNING) -> Rollout:
    versions = {v.version: v for v in prompt.versions.all()}
    return Rollout.objects.create(
        prompt=prompt,
        baseline=versions[1],
        candidate=versions[2],
        plan=[{"percent": 10, "min_duration_s": 600, "min_samples": 200}],
        gates=[],
        state=state,
        percent=10,
        started_at=timezone.now(),
        step_started_at=timezone.now(),
    )


@pytest.fixture
def setup(alice: Any) -> Setup:
    prompt = make_prompt(alice, name="support.answer", versions=2)
    return Setup(prompt=prompt, rollout=make_rollout(prompt))


@pytest.fixture
def ingest_client(alice: Any, client_with_key: Callable[..., APIClient]) -> APIClient:
    return client_with_key(alice, "ingest")


def event(rollout: Rollout | None = None, *, arm: str = "candidate", **fields: Any) -> dict[str, Any]:
    """An event shaped like SPEC's example; ``rollout=None`` gives a production event of v1."""
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "prompt": "support.answer",
        "version": 1,
        "rollout_id": None,
        "arm": "production",
        "latency_ms": 812.5,
        "error": False,
        "error_type": None,
        "cost_usd": 0.0021,
        "input_tokens": 350,
        "output_tokens": 120,
        "scores": {"helpfulness": 0.82},
        "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if rollout is not None:
        body.update(rollout_id=rollout.pk, arm=arm, version=2 if arm == "candidate" else 1)
    body.update(fields)
    return body


def post_events(client: APIClient, events: list[dict[str, Any]]) -> Any:
    return client.post(EVENTS_URL, {"events": events}, format="json")
