"""The snapshot stream's side of the serving state, in the stream process (one asyncio loop).

One ``StreamHub`` per process follows the serving state and the API keys and fans them out to
every open stream. It learns of changes from one Redis pub/sub subscription
(``core.state_cache.CHANGES_CHANNEL``: writers publish the name of the state they changed and
the new global generation)
and, whether or not pub/sub works, reads each state's generation counter every quarter second,
rebuilding when it moved. The caches are synchronous and may block: each is read on a thread of
its own, never on the loop. A new stream starts from a state at least as new as the counter
when it connected (a write answered before is in its snapshot).

A change of the serving state is published at most every ``CHANGE_SECONDS``; each published
state carries its ``change`` event from the one before, built once for all streams. Every
stream checks its key whenever the keys change and whenever it wakes, and ends when the key no
longer reads. While the serving state cannot be confirmed (Redis or PostgreSQL failing), the
keepalives say ``stale``: SDKs do not take them for a confirmation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio
from django.conf import settings
from redis.exceptions import RedisError

from access.selectors import KeyInfo, api_keys_cache, key_scopes
from core.errors import ServiceUnavailable
from core.prompt_limits import PromptLimits
from core.state_cache import (
    API_KEYS_STATE,
    CHANGES_CHANNEL,
    CHECK_SECONDS,
    SERVING_STATE,
    StateCache,
    generation_key,
)
from serving.snapshot_changes import KEEPALIVE, STALE_KEEPALIVE, change_data, snapshot_change, sse_event
from serving.state import LimitedSnapshot, ServingState, serving_cache

CHANGE_SECONDS = 0.1  # at most one change event per stream in this time
RESUBSCRIBE_SECONDS = 1.0
CONFIRM_SECONDS = 1.0  # the longest a new stream waits for the state of the counter it read
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Published:
    state: ServingState
    previous_etag: str | None
    change_event: bytes  # the change from the state published before (etag previous_etag)


def _current(cache: StateCache[T], announced: bool) -> tuple[T, bool]:
    """The cache's state and whether it is stale; confirmed against the counter at this moment
    (and brought up to date) when a change was announced."""
    if announced:
        try:
            return cache.confirmed()
        except ServiceUnavailable:
            pass  # neither Redis nor PostgreSQL could confirm it: the last good state, stale
    return cache.get()


def _checked(check: Callable[[str], T], header: str) -> tuple[T, Mapping[str, KeyInfo]]:
    """``check(header)`` (it may raise), and the keys it was checked against."""
    result = check(header)
    return result, _current(api_keys_cache, announced=False)[0]


class StreamHub:
    def __init__(self, *, keepalive_seconds: float) -> None:
        self.keepalive_seconds = keepalive_seconds
        self.published: Published | None = None
        self.stale = False  # the serving state could not be confirmed lately: keepalives say so
        self.keys: Mapping[str, KeyInfo] = {}
        self._ready = asyncio.Event()
        self._tick = asyncio.Event()  # set, and replaced, when the state or the keys change
        self._announced = {SERVING_STATE: asyncio.Event(), API_KEYS_STATE: asyncio.Event()}
        self._threads = {name: ThreadPoolExecutor(1, thread_name_prefix=name) for name in self._announced}
        self._loaded_generation = dict.fromkeys(self._announced, -1)  # read before the last rebuild
        self._loaded = asyncio.Event()  # set, and replaced, after each read of a cache
        self._redis = redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
                settings.REDIS_URL, max_connections=8, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start following (once; at the process's start, or at the first stream without it)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._listen()),
            asyncio.create_task(
                self._follow(SERVING_STATE, serving_cache, self._adopt_state, CHANGE_SECONDS)
            ),
            asyncio.create_task(self._follow(API_KEYS_STATE, api_keys_cache, self._adopt_keys, 0.0)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for thread in self._threads.values():
            thread.shutdown(wait=False)
        await self._redis.aclose()

    async def check_key(self, check: Callable[[str], T], header: str) -> T:
        """``check(header)`` on the keys' thread (it reads the keys cache); the keys it read are
        then those the streams are checked against."""
        loop = asyncio.get_running_loop()
        result, keys = await loop.run_in_executor(self._threads[API_KEYS_STATE], _checked, check, header)
        self._adopt_keys(keys)
        return result

    def key_reads(self, key_hash: str, prompts: PromptLimits) -> bool:
        """Whether the key may still read, limited to the same prompts as when it connected."""
        info = self.keys.get(key_hash)
        return info is not None and "read" in key_scopes(info) and info.prompts == prompts

    async def events(self, key_hash: str, last_event_id: str) -> AsyncIterator[bytes]:
        """What one stream sends: the snapshot (unless ``last_event_id`` is its ETag), then each
        change and keepalives; it ends when the key may no longer read."""
        await self._ready.wait()
        await self.confirm(SERVING_STATE)
        loop = asyncio.get_running_loop()
        published = self.published
        assert published is not None  # set before _ready
        sent = published.state
        info = self.keys.get(key_hash)
        if info is None or "read" not in key_scopes(info):
            return  # revoked since it was checked
        prompts = info.prompts
        seen: ServingState | LimitedSnapshot = sent if prompts is None else sent.limited(prompts)
        if last_event_id != seen.snapshot_etag:
            yield sse_event("snapshot", seen.snapshot_etag, seen.snapshot)
        keepalive_at = loop.time() + self.keepalive_seconds
        while True:
            tick = self._tick
            try:
                await asyncio.wait_for(tick.wait(), max(0.0, keepalive_at - loop.time()))
            except TimeoutError:
                keepalive_at = loop.time() + self.keepalive_seconds
                yield STALE_KEEPALIVE if self.stale else KEEPALIVE
                continue
            if not self.key_reads(key_hash, prompts):
                return
            published = self.published
            if published is not None and published.state is not sent:
                if prompts is not None:  # a key limited to prompts: only their changes
                    limited = published.state.limited(prompts)
                    change = snapshot_change(seen.entries, limited.entries)
                    if change:
                        generated_at = published.state.generated_at.isoformat()
                        yield sse_event(
                            "change", limited.snapshot_etag, change_data(change, generated_at=generated_at)
                        )
                    seen = limited
                elif published.previous_etag == sent.snapshot_etag:
                    yield published.change_event
                else:  # this stream missed a change (it was connecting): its own difference
                    yield _change_event(sent, published.state)
                sent = published.state

    async def confirm(self, name: str) -> None:
        """Wait until the state ``name`` was rebuilt after its counter reached its present value
        (at most CONFIRM_SECONDS; not at all when Redis cannot be read)."""
        generation = await self._generation(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFIRM_SECONDS
        while generation is not None and self._loaded_generation[name] < generation:
            loaded = self._loaded
            self._announced[name].set()
            try:
                await asyncio.wait_for(loaded.wait(), deadline - loop.time())
            except TimeoutError:
                return

    def _moved(self, name: str, generation: int | None) -> bool:
        return generation is not None and generation != self._loaded_generation[name]

    async def _generation(self, name: str) -> int | None:
        try:
            value = await self._redis.get(generation_key(name))
        except (RedisError, OSError):
            return None
        return int(value or 0)

    def _signal(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    def _adopt_state(self, state: ServingState) -> bool:
        current = self.published
        if current is not None and current.state.snapshot_etag == state.snapshot_etag:
            return False
        if current is None:
            self.published = Published(state, None, b"")
        else:
            change_event = _change_event(current.state, state)
            self.published = Published(state, current.state.snapshot_etag, change_event)
        self._ready.set()
        self._signal()
        return True

    def _adopt_keys(self, keys: Mapping[str, KeyInfo]) -> bool:
        if keys is self.keys:
            return False
        self.keys = keys
        self._signal()
        return True

    async def _follow(
        self, name: str, cache: StateCache[Any], adopt: Callable[[Any], bool], min_interval: float
    ) -> None:
        """Keep adopting the cache's state, rebuilt when a change is announced or the counter
        moved (but at most every ``min_interval``); read every half ``CHECK_SECONDS``."""
        announced = self._announced[name]
        loop = asyncio.get_running_loop()
        adopted_at = -min_interval
        while True:
            try:
                await asyncio.wait_for(announced.wait(), CHECK_SECONDS / 2)
            except TimeoutError:
                pass
            generation = await self._generation(name)
            rebuild = announced.is_set() or self._moved(name, generation)
            if rebuild:
                await asyncio.sleep(adopted_at + min_interval - loop.time())
                announced.clear()  # what is announced from now on may be missing from this read
                generation = await self._generation(name)
            try:
                state, stale = await loop.run_in_executor(self._threads[name], _current, cache, rebuild)
            except ServiceUnavailable as error:
                log.warning("the stream cannot load the %s state: %s", name, error)
                await asyncio.sleep(CHECK_SECONDS)
                continue
            if rebuild and generation is not None:
                self._loaded_generation[name] = generation
            if name == SERVING_STATE:
                self.stale = stale
            if adopt(state):
                adopted_at = loop.time()
            self._loaded.set()
            self._loaded = asyncio.Event()

    async def _listen(self) -> None:
        """Wake the followers on every change published in Redis; resubscribe after a failure."""
        while True:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANGES_CHANNEL)
                    for announced in self._announced.values():  # changes may have gone unheard
                        announced.set()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            woken = self._announced.get(message["data"].decode().split(" ", 1)[0])
                            if woken is not None:
                                woken.set()
            except (RedisError, OSError) as error:
                log.warning("no Redis pub/sub for the stream (%s); checking the counter meanwhile", error)
            finally:
                await client.aclose()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)


def _change_event(old: ServingState, new: ServingState) -> bytes:
    data = change_data(snapshot_change(old.entries, new.entries), generated_at=new.generated_at.isoformat())
    return sse_event("change", new.snapshot_etag, data)
