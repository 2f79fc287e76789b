"""Test data, created through the same services the product uses."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from access.services import apikey_create
from core.actors import Actor
from registry.models import Prompt
from registry.services import prompt_create, version_create
from rollouts.stats import ArmStats, Histogram, Moments, latency_bucket_index


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True


def actor_for(user, *, admin: bool = False) -> Actor:  # type: ignore[no-untyped-def]
    return Actor(user_id=user.pk, name=user.get_username(), is_admin=admin or user.is_superuser, via="test")


def make_key(user, scopes: str = "read") -> str:  # type: ignore[no-untyped-def]
    _, raw = apikey_create(actor=Actor.system(), name="test", user=user, scopes=scopes.split(","))
    return raw


def make_prompt(owner, name: str = "support.answer", kind: str = "text", versions: int = 1) -> Prompt:  # type: ignore[no-untyped-def]
    actor = actor_for(owner)
    prompt = prompt_create(actor=actor, name=name, kind=kind, owners=[owner.get_username()])
    for n in range(1, versions + 1):
        if kind == "chat":
            version_create(
                actor=actor,
                prompt_name=name,
                messages=[{"role": "system", "content": f"v{n}: help {{{{customer}}}}"}],
                model="gpt-4o-mini",
            )
        else:
            version_create(
                actor=actor,
                prompt_name=name,
                template=f"v{n}: Answer {{{{question}}}} for {{{{customer}}}}",
                model="gpt-4o-mini",
                config={"temperature": 0.2},
                message=f"version {n}",
            )
    prompt.refresh_from_db()
    return prompt


def event_stats(
    *,
    latency_ms: float | None = None,
    error: bool = False,
    cost_usd: float | None = None,
    scores: dict[str, float] | None = None,
) -> ArmStats:
    """The statistics of one outcome event (one request), built field by field: what the
    aggregates of ingest must add up to."""

    def moments(value: float | None) -> Moments:
        return Moments() if value is None else Moments(1, value, value * value)

    return ArmStats(
        samples=1,
        errors=int(error),
        latency=moments(latency_ms),
        histogram=Histogram() if latency_ms is None else Histogram(((latency_bucket_index(latency_ms), 1),)),
        cost=moments(cost_usd),
        scores=tuple(sorted((name, moments(value)) for name, value in (scores or {}).items())),
    )
