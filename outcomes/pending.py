"""Outcome aggregates waiting in Redis, and the event ids already seen.

Every Redis step here is one Lua script, so it happens entirely or not at all (a script's writes
reach the AOF together, as one MULTI/EXEC). Redis must run with ``appendonly yes`` and
``appendfsync always``, as the embedded one does: Redis then writes a script's effects to disk
before it answers, which is what makes a 202 durable.

Keys (all under ``promptramp:ingest:``; one Redis, not Redis Cluster):

* ``agg:<minute>:<series>`` a hash of aggregate fields (outcomes.aggregation) being added to;
  ``pending`` the set of those keys.
* ``batch:<id>`` the set of keys a flush took; ``batch:<id>:<key>`` each taken hash (renamed
  from ``agg:<key>``, so new events start a new hash); ``batches`` the ids of batches not yet
  forgotten. A batch is applied to PostgreSQL once (outcomes.services), then forgotten.
* ``score_names:<rollout id>`` the score names a rollout's events have carried (at most
  ``max_names``; a batch bringing more is refused whole). Forgotten SCORE_NAMES_TTL after its
  last batch.
* ``dedupe`` the generations of seen event ids, ``dedupe:<n>`` the ids of generation n (sets of
  16-byte UUIDs). A generation closes after WINDOW_SECONDS / GENERATIONS or after
  max_ids / GENERATIONS ids; a closed one is forgotten once it ended more than WINDOW_SECONDS ago
  or once max_ids ids have been seen after it. So an id is remembered while it is younger than
  24 h *and* among the last max_ids (50 million) ids, and for at most one generation longer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from django.conf import settings
from redis.commands.core import Script
from redis.exceptions import RedisError, ResponseError

from core.redis_client import get_checking_redis, get_redis, get_request_redis
from outcomes.aggregation import Increments, increments_payload

PREFIX = "promptramp:ingest:"
WINDOW_SECONDS = 86_400
SCORE_NAMES_TTL = 90 * 86_400
GENERATIONS = 12
log = logging.getLogger(__name__)

_ADD = """
local P = KEYS[1]
local now, blob = tonumber(ARGV[1]), ARGV[2]
local window, max_ids, gens = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('SCARD', P .. 'pending') >= tonumber(ARGV[7]) then return {'busy'} end

-- each rollout's score names, in the batch's order: the new ones past max_names are refused
local max_names, refused = tonumber(ARGV[9]), {}
local score_names = cjson.decode(ARGV[8])
for rollout, names in pairs(score_names) do
  local key = P .. 'score_names:' .. rollout
  local known = redis.call('SMISMEMBER', key, unpack(names))
  local room = max_names - redis.call('SCARD', key)
  for i = 1, #names do
    if known[i] == 0 then
      if room > 0 then room = room - 1 else refused[#refused + 1] = rollout .. ':' .. names[i] end
    end
  end
end
if #refused > 0 then return {'too_many_score_names', refused} end

local meta, sets = P .. 'dedupe', P .. 'dedupe:'
local cur = tonumber(redis.call('HGET', meta, 'current'))
if not cur then
  cur = 1
  redis.call('HSET', meta, 'current', 1, 'oldest', 1, '1:start', now, '1:count', 0)
end
-- a generation closes after window / gens seconds or max_ids / gens ids; its end is the
-- latest time an id can have been added to it
local count = tonumber(redis.call('HGET', meta, cur .. ':count'))
local start, span = tonumber(redis.call('HGET', meta, cur .. ':start')), window / gens
if count >= math.ceil(max_ids / gens) or now - start >= span then
  redis.call('HSET', meta, cur .. ':end', math.min(now, start + span))
  cur = cur + 1
  redis.call('HSET', meta, 'current', cur, cur .. ':start', now, cur .. ':count', 0)
end
-- forget the generations that ended over window seconds ago or have max_ids newer ids
local oldest = tonumber(redis.call('HGET', meta, 'oldest'))
local newer = tonumber(redis.call('HGET', meta, cur .. ':count'))
for g = cur - 1, oldest, -1 do
  if newer >= max_ids or tonumber(redis.call('HGET', meta, g .. ':end')) < now - window then
    for d = oldest, g do
      redis.call('UNLINK', sets .. d)
      redis.call('HDEL', meta, d .. ':start', d .. ':count', d .. ':end')
    end
    oldest = g + 1
    redis.call('HSET', meta, 'oldest', oldest)
    break
  end
  newer = newer + tonumber(redis.call('HGET', meta, g .. ':count'))
end

local n = #blob / 16
local ids = {}
for i = 1, n do ids[i] = string.sub(blob, 16 * i - 15, 16 * i) end
local seen, dups = {}, {}
for g = oldest, cur do
  local found = redis.call('SMISMEMBER', sets .. g, unpack(ids))
  for i = 1, n do
    if found[i] == 1 and not seen[i] then
      seen[i] = true
      dups[#dups + 1] = i
    end
  end
end
if #dups > 0 then return {'duplicates', dups} end

redis.call('SADD', sets .. cur, unpack(ids))
redis.call('HINCRBY', meta, cur .. ':count', n)
for key, parts in pairs(cjson.decode(ARGV[3])) do
  local hash = P .. 'agg:' .. key
  for field, value in pairs(parts[1]) do redis.call('HINCRBY', hash, field, value) end
  for field, value in pairs(parts[2]) do redis.call('HINCRBYFLOAT', hash, field, value) end
  redis.call('SADD', P .. 'pending', key)
end
for rollout, names in pairs(score_names) do
  local key = P .. 'score_names:' .. rollout
  redis.call('SADD', key, unpack(names))
  redis.call('EXPIRE', key, tonumber(ARGV[10]))
end
return {'ok', n}
"""

_TAKE = """
redis.replicate_commands()
local P, batch = KEYS[1], ARGV[1]
local taken = 0
for _, key in ipairs(redis.call('SPOP', P .. 'pending', tonumber(ARGV[2]))) do
  if redis.call('EXISTS', P .. 'agg:' .. key) == 1 then
    redis.call('RENAME', P .. 'agg:' .. key, P .. 'batch:' .. batch .. ':' .. key)
    redis.call('SADD', P .. 'batch:' .. batch, key)
    taken = taken + 1
  end
end
if taken > 0 then redis.call('SADD', P .. 'batches', batch) end
return taken
"""

_FORGET = """
local P, batch = KEYS[1], ARGV[1]
for _, key in ipairs(redis.call('SMEMBERS', P .. 'batch:' .. batch)) do
  redis.call('UNLINK', P .. 'batch:' .. batch .. ':' .. key)
end
redis.call('UNLINK', P .. 'batch:' .. batch)
redis.call('SREM', P .. 'batches', batch)
return 1
"""

_scripts: dict[str, Script] = {}


def _run(source: str, *args: str | bytes | int | float, client: redis.Redis | None = None) -> Any:
    client = client or get_redis()
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = client.register_script(source)
    return script(keys=[PREFIX], args=list(args), client=client)


@dataclass(frozen=True)
class AddResult:
    """What the ingest script did: ``added`` ids, or the 0-based positions of ``duplicates``
    (then nothing was written), or ``busy`` (the backlog is over its bound; nothing written), or
    the ``refused_score_names`` (rollout id, name) a rollout has no room for (nothing written)."""

    added: int = 0
    duplicates: tuple[int, ...] = ()
    busy: bool = False
    refused_score_names: frozenset[tuple[int, str]] = frozenset()


def events_add(
    *,
    event_ids: list[bytes],
    increments: dict[str, Increments],
    score_names: dict[int, list[str]],
    max_score_names: int,
    now: float,
) -> AddResult:
    """Record the ids as seen and add the increments, unless one of the ids was seen already or
    a rollout would carry more than ``max_score_names`` score names (``score_names``: each
    rollout's names in this batch, in the batch's order; the first new ones take the room left)."""
    reply = _run(
        _ADD,
        repr(now),
        b"".join(event_ids),
        orjson.dumps(increments_payload(increments)),
        WINDOW_SECONDS,
        settings.PROMPTRAMP_DEDUPE_MAX_IDS,
        GENERATIONS,
        settings.PROMPTRAMP_INGEST_MAX_PENDING,
        orjson.dumps({str(rollout): names for rollout, names in score_names.items() if names}),
        max_score_names,
        SCORE_NAMES_TTL,
        client=get_request_redis(),  # a request waits on this one
    )
    assert isinstance(reply, list)
    status = reply[0]
    if status == b"ok":
        return AddResult(added=int(reply[1]))
    if status == b"duplicates":
        return AddResult(duplicates=tuple(int(i) - 1 for i in reply[1]))
    if status == b"too_many_score_names":
        pairs = (item.decode().split(":", 1) for item in reply[1])
        return AddResult(refused_score_names=frozenset((int(rollout), name) for rollout, name in pairs))
    return AddResult(busy=True)


def batch_take(*, batch_id: str, max_keys: int) -> int:
    """Move up to ``max_keys`` pending aggregates into batch ``batch_id``; how many were moved."""
    return int(_run(_TAKE, batch_id, max_keys))


def batches_open() -> list[str]:
    """Batches taken and not yet forgotten: being applied now, or left by a crash."""
    return sorted(member.decode() for member in get_redis().smembers(PREFIX + "batches"))  # type: ignore[union-attr]


def batch_read(batch_id: str) -> dict[str, dict[bytes, bytes]]:
    """The aggregates of a batch: key -> hash fields. Empty once the batch was forgotten."""
    client = get_redis()
    keys = sorted(member.decode() for member in client.smembers(f"{PREFIX}batch:{batch_id}"))  # type: ignore[union-attr]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(f"{PREFIX}batch:{batch_id}:{key}")
    return {key: fields for key, fields in zip(keys, pipe.execute(), strict=True) if fields}


def batch_forget(batch_id: str) -> None:
    _run(_FORGET, batch_id)


def pending_count() -> int:
    """Aggregates waiting for a flush."""
    return int(get_redis().scard(PREFIX + "pending"))


_durability_checked = False


def durability_warn_once() -> None:
    """Log an error, once per process, when Redis would not write events to disk before it
    answers (AOF off, or ``appendfsync`` other than ``always``)."""
    global _durability_checked
    if _durability_checked:
        return
    _durability_checked = True
    try:
        config = get_checking_redis().config_get("append*")  # on a request's path: 50 ms
    except ResponseError:
        log.info("cannot read the Redis configuration (CONFIG disabled); assuming appendfsync always")
        return
    except RedisError:
        _durability_checked = False
        return
    if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
        log.error(
            "Redis runs with appendonly=%s appendfsync=%s: outcome events answered 202 can be lost "
            "if Redis stops. Run it with appendonly yes and appendfsync always.",
            config.get("appendonly"),
            config.get("appendfsync"),
        )
