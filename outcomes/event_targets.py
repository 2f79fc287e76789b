"""What an outcome event is counted under: its prompt version, and its rollout and arm.

Versions and a rollout's (prompt, baseline, candidate) never change once created, so each web
process keeps what it has looked up in a bounded LRU cache (found ones only: a prompt created a
second later must be found then). The misses of a batch are loaded in one query per kind, so a
batch costs no query at all once its prompts and rollouts have been seen.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any, Generic, TypeVar

from django.db.models import Q

from outcomes.aggregation import series_key
from outcomes.validation import OVERRIDE, PRODUCTION, SHADOW, SHADOW_BASELINE, Event, problem
from registry.models import PromptVersion
from rollouts.models import Rollout

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
CACHE_SIZE = 10_000


class LruCache(Generic[K, V]):
    """A bounded, thread-safe map that forgets the least recently used entry first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def get_many(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """The values of the distinct ``keys`` it holds, and the keys it does not."""
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in set(keys):
            value = self.get(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        return found, missing

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True, slots=True)
class VersionRef:
    prompt_id: int
    version_id: int


@dataclass(frozen=True, slots=True)
class RolloutRef:
    prompt_name: str
    prompt_id: int
    arms: dict[str, tuple[int, int]]  # arm -> (version number, version id)


versions_cache: LruCache[tuple[str, int], VersionRef] = LruCache(CACHE_SIZE)
rollouts_cache: LruCache[int, RolloutRef] = LruCache(CACHE_SIZE)


def versions_lookup(wanted: Iterable[tuple[str, int]]) -> dict[tuple[str, int], VersionRef]:
    """(prompt name, version number) -> ids, for those that exist."""
    found, missing = versions_cache.get_many(wanted)
    if missing:
        condition = reduce(or_, (Q(prompt__name=name, version=number) for name, number in missing))
        rows = PromptVersion.objects.filter(condition).values_list(
            "prompt__name", "version", "prompt_id", "id"
        )
        for name, number, prompt_id, version_id in rows:
            ref = VersionRef(prompt_id=prompt_id, version_id=version_id)
            versions_cache.put((name, number), ref)
            found[(name, number)] = ref
    return found


def rollouts_lookup(wanted: Iterable[int]) -> dict[int, RolloutRef]:
    """Rollout id -> its prompt and arms' versions, for those that exist."""
    found, missing = rollouts_cache.get_many(wanted)
    if missing:
        rows = Rollout.objects.filter(pk__in=missing).values_list(
            "id",
            "prompt__name",
            "prompt_id",
            "baseline__version",
            "baseline_id",
            "candidate__version",
            "candidate_id",
        )
        for rollout_id, name, prompt_id, base_number, base_id, cand_number, cand_id in rows:
            ref = RolloutRef(
                prompt_name=name,
                prompt_id=prompt_id,
                arms={
                    "baseline": (base_number, base_id),
                    "candidate": (cand_number, cand_id),
                    SHADOW: (cand_number, cand_id),
                    SHADOW_BASELINE: (base_number, base_id),
                },
            )
            rollouts_cache.put(rollout_id, ref)
            found[rollout_id] = ref
    return found


def events_series(events: list[Event]) -> tuple[list[tuple[str, Event]], list[dict[str, Any]]]:
    """Each event with the series it is counted under, and the problems of those that point at
    no prompt version, rollout or arm that exists."""
    rollouts = rollouts_lookup(e.rollout_id for e in events if e.rollout_id is not None)
    versions = versions_lookup(
        (e.prompt, e.version) for e in events if e.rollout_id is None or e.arm == OVERRIDE
    )
    placed: list[tuple[str, Event]] = []
    problems: list[dict[str, Any]] = []
    known: dict[tuple[str, int, int | None, str | None], str | tuple[str, str]] = {}
    for event in events:
        target = (event.prompt, event.version, event.rollout_id, event.arm)
        outcome = known.get(target)
        if outcome is None:
            outcome = known[target] = _series(target, rollouts, versions)
        if isinstance(outcome, str):
            placed.append((outcome, event))
        else:
            problems.append(problem(event.index, *outcome))
    return placed, problems


def _series(
    target: tuple[str, int, int | None, str | None],
    rollouts: dict[int, RolloutRef],
    versions: dict[tuple[str, int], VersionRef],
) -> str | tuple[str, str]:
    """The series key of a target, or (field, reason) when it points at nothing."""
    prompt, number, rollout_id, arm = target
    rollout = None
    if rollout_id is not None:
        rollout = rollouts.get(rollout_id)
        if rollout is None:
            return ("rollout_id", f"there is no rollout {rollout_id}")
        if rollout.prompt_name != prompt:
            return ("prompt", f"rollout {rollout_id} is a rollout of {rollout.prompt_name!r}")
    if rollout is None or arm == OVERRIDE:  # production, or an override's own version
        ref = versions.get((prompt, number))
        if ref is None:
            return ("version", f"prompt {prompt!r} has no version {number}")
        return series_key(
            prompt_id=ref.prompt_id, version_id=ref.version_id, rollout_id=rollout_id, arm=arm or PRODUCTION
        )
    arm_number, arm_version_id = rollout.arms[str(arm)]
    if arm_number != number:
        arm_name = (
            "baseline" if arm == SHADOW_BASELINE else "shadow (the candidate)" if arm == SHADOW else arm
        )
        return ("version", f"the {arm_name} of rollout {rollout_id} is version {arm_number}")
    return series_key(
        prompt_id=rollout.prompt_id, version_id=arm_version_id, rollout_id=rollout_id, arm=str(arm)
    )
