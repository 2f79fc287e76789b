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
* ``unapplied`` ``<batch id>:<key>`` -> why an aggregate of a batch could not be applied to
  PostgreSQL; ``unapplied:<batch id>:<key>`` its hash, moved there from the batch. Kept until an
  operator deletes them.
* ``score_index:<scope>`` the score names a scope's events have carried, each with its number
  (0, 1, …): a scope is a rollout (``<rollout id>``; at most MAX_SCORE_NAMES_PER_ROLLOUT names)
  or, outside rollouts, a version (``v<version id>``; at most MAX_SCORE_NAMES_PER_VERSION); a
  batch bringing more is refused whole. Forgotten SCORE_NAMES_TTL after its last batch (far
  longer than a call is remembered, so a name keeps its number while a call may carry it).
* ``dedupe`` the generations of seen event ids, ``seen:<n>`` the ids of generation n: a hash of
  16-byte UUIDs to what is remembered of the event. A call's record is ``call_record`` (its
  minute and series, 17 bytes) followed by a bit per score name it carries (bit i of byte
  i // 8 for the name numbered i in its scope), so a late score (``of_event``) finds its call's
  arm and minute, and adds only the names the call does not carry yet; a late score's own id
  maps to "". A generation closes after WINDOW_SECONDS / GENERATIONS or after
  max_ids / GENERATIONS ids; a closed one is forgotten once it ended more than WINDOW_SECONDS ago
  or once max_ids ids have been seen after it. So an id (and its call) is remembered while it is
  younger than 24 h *and* among the last max_ids (50 million) ids, and for at most one
  generation longer. (``dedupe:<n>``, sets of ids written before late scores existed, are
  deleted with their generation.)
* ``prompt_names`` prompt id -> name, for checking a late score of a key limited to prompts.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from django.conf import settings
from redis.commands.core import Script
from redis.exceptions import RedisError, ResponseError

from core.prompt_limits import PromptLimits
from core.redis_client import get_checking_redis, get_redis, get_request_redis
from outcomes.aggregation import Increments, increments_payload, parse_key
from outcomes.models import OutcomeMinute

PREFIX = "promptramp:ingest:"
WINDOW_SECONDS = 86_400
SCORE_NAMES_TTL = 90 * 86_400
GENERATIONS = 12
# Distinct score names a rollout's events may carry: each is a statistic every evaluation reads
# and a `score:*` gate judges, so a careless (or hostile) client cannot make them unbounded.
MAX_SCORE_NAMES_PER_ROLLOUT = 20
# Outside a rollout, a version's calls are bounded too: each remembered call keeps a bit per name.
MAX_SCORE_NAMES_PER_VERSION = 256
# A remembered call's arm is one letter (never change one: calls remembered for 24 h carry it).
ARM_CODES = {
    "baseline": b"b",
    "candidate": b"c",
    "production": b"p",
    "shadow": b"s",
    "shadow_baseline": b"S",
    "override": b"o",
}
assert set(ARM_CODES) == set(OutcomeMinute.Arm.values), "give each arm of OutcomeMinute a letter in ARM_CODES"
log = logging.getLogger(__name__)

_ADD = """
local P = KEYS[1]
local now, blob = tonumber(ARGV[1]), ARGV[2]
local window, max_ids, gens = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('SCARD', P .. 'pending') >= tonumber(ARGV[7]) then return {'busy'} end
local calls, groups = ARGV[8], cjson.decode(ARGV[9])
local of_blob, late_scores = ARGV[10], cjson.decode(ARGV[11])
local limits = ARGV[12] ~= '' and cjson.decode(ARGV[12]) or nil
local batch_prompts = cjson.decode(ARGV[13])
local rollout_names, version_names, names_ttl = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
local ARMS = {$ARMS}

local meta, seen = P .. 'dedupe', P .. 'seen:'
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
      redis.call('UNLINK', seen .. d, P .. 'dedupe:' .. d)  -- dedupe:<n>: sets of ids before late scores
      redis.call('HDEL', meta, d .. ':start', d .. ':count', d .. ':end')
    end
    oldest = g + 1
    redis.call('HSET', meta, 'oldest', oldest)
    break
  end
  newer = newer + tonumber(redis.call('HGET', meta, g .. ':count'))
end

-- ids seen before: nothing is written
local n, n_calls, n_late = #blob / 16, #calls / 17, #of_blob / 16
local ids = {}
for i = 1, n do ids[i] = string.sub(blob, 16 * i - 15, 16 * i) end
local seen_here, dups = {}, {}
for g = oldest, cur do
  local found = redis.call('HMGET', seen .. g, unpack(ids))
  for i = 1, n do
    if found[i] and not seen_here[i] then
      seen_here[i] = true
      dups[#dups + 1] = i
    end
  end
end
if #dups > 0 then return {'duplicates', dups} end

-- each late score's call: one of this batch (calls come first), else a remembered one; its
-- record is minute, prompt, version, rollout (0: none) and arm (17 bytes), then a bit per
-- score name it carries, numbered by the name's index in its scope (its rollout, or 'v' and
-- its version outside a rollout)
local record, home, of, lookup, asked = {}, {}, {}, {}, {}
for i = 1, n_calls do record[ids[i]] = string.sub(calls, 17 * i - 16, 17 * i) end
for j = 1, n_late do
  local id = string.sub(of_blob, 16 * j - 15, 16 * j)
  of[j] = id
  if record[id] == nil and not asked[id] then
    asked[id] = true
    lookup[#lookup + 1] = id
  end
end
if #lookup > 0 then
  for g = cur, oldest, -1 do
    local found = redis.call('HMGET', seen .. g, unpack(lookup))
    for k = 1, #lookup do
      local id = lookup[k]
      if found[k] and #found[k] >= 17 and record[id] == nil then
        record[id], home[id] = found[k], seen .. g
      end
    end
  end
end
local function scope_of(call)
  local _, _, version, rollout = struct.unpack('>I4I4I4I4', call)
  return rollout ~= 0 and tostring(rollout) or 'v' .. version
end

-- a key limited to prompts scores only calls of its prompts
if limits then
  local names, refused = {}, {}
  for id, name in pairs(batch_prompts) do names[tonumber(id)] = name end
  for j = 1, n_late do
    local call = record[of[j]]
    if call then
      local _, prompt = struct.unpack('>I4I4', call)
      local name = names[prompt]
      if name == nil then
        name = redis.call('HGET', P .. 'prompt_names', prompt) or ''
        names[prompt] = name
      end
      local allowed = false
      for _, pattern in ipairs(limits) do
        local prefix = string.sub(pattern, -1) == '*' and string.sub(pattern, 1, -2)
        if pattern == name or (prefix and string.sub(name, 1, #prefix) == prefix) then
          allowed = true
          break
        end
      end
      if not allowed then refused[#refused + 1] = n_calls + j end
    end
  end
  if #refused > 0 then return {'prompt_not_allowed', refused} end
end

-- each scope's score names, in the batch's order (calls first): the new ones past its room
-- are refused
local order, wanted = {}, {}
local function want(scope, name)
  local names = wanted[scope]
  if names == nil then
    names = {list = {}, has = {}}
    wanted[scope] = names
    order[#order + 1] = scope
  end
  if not names.has[name] then
    names.has[name] = true
    names.list[#names.list + 1] = name
  end
end
for _, group in ipairs(groups) do
  for _, name in ipairs(group[2]) do want(group[1], name) end
end
for j = 1, n_late do
  local call = record[of[j]]
  if call then
    for _, score in ipairs(late_scores[j]) do want(scope_of(call), score[1]) end
  end
end
local index, added = {}, {}
for _, scope in ipairs(order) do
  local key, names = P .. 'score_index:' .. scope, wanted[scope].list
  local known = redis.call('HMGET', key, unpack(names))
  local size = redis.call('HLEN', key)
  local room = (string.sub(scope, 1, 1) == 'v' and version_names or rollout_names) - size
  local at, new = {}, {}
  for k = 1, #names do
    if known[k] then
      at[names[k]] = tonumber(known[k])
    elseif room > 0 then
      at[names[k]] = size + #new / 2
      new[#new + 1] = names[k]
      new[#new + 1] = at[names[k]]
      room = room - 1
    end
  end
  index[scope], added[scope] = at, new
end
local refused = {}
for _, group in ipairs(groups) do
  for _, name in ipairs(group[2]) do
    if index[group[1]][name] == nil then
      for _, i in ipairs(group[3]) do refused[#refused + 1] = i .. ':' .. name end
    end
  end
end
for j = 1, n_late do
  local call = record[of[j]]
  if call then
    for _, score in ipairs(late_scores[j]) do
      if index[scope_of(call)][score[1]] == nil then
        refused[#refused + 1] = (n_calls + j) .. ':' .. score[1]
      end
    end
  end
end
if #refused > 0 then return {'too_many_score_names', refused} end

-- every check passed: write
for _, scope in ipairs(order) do
  local key = P .. 'score_index:' .. scope
  if #added[scope] > 0 then redis.call('HSET', key, unpack(added[scope])) end
  redis.call('EXPIRE', key, names_ttl)
end
local function has(mask, i)
  local byte = string.byte(mask, math.floor(i / 8) + 1)
  return byte ~= nil and bit.band(byte, bit.lshift(1, i % 8)) ~= 0
end
local function with(mask, i)
  local at = math.floor(i / 8) + 1
  if #mask < at then mask = mask .. string.rep(string.char(0), at - #mask) end
  local byte = bit.bor(string.byte(mask, at), bit.lshift(1, i % 8))
  return string.sub(mask, 1, at - 1) .. string.char(byte) .. string.sub(mask, at + 1)
end
for _, group in ipairs(groups) do
  local mask, at = '', index[group[1]]
  for _, name in ipairs(group[2]) do mask = with(mask, at[name]) end
  if mask ~= '' then
    for _, i in ipairs(group[3]) do record[ids[i]] = record[ids[i]] .. mask end
  end
end
local matched, updated = 0, {}
for j = 1, n_late do
  local id = of[j]
  local call = record[id]
  if call then
    local minute, prompt, version, rollout, arm = struct.unpack('>I4I4I4I4c1', call)
    local at, head, mask = index[scope_of(call)], string.sub(call, 1, 17), string.sub(call, 18)
    local key = table.concat({minute, prompt, version, rollout ~= 0 and rollout or '-', ARMS[arm]}, ':')
    for _, score in ipairs(late_scores[j]) do
      local name = score[1]
      if not has(mask, at[name]) then  -- a name the call carries already keeps its first value
        mask = with(mask, at[name])
        local hash = P .. 'agg:' .. key
        redis.call('HINCRBY', hash, 's:' .. name .. ':c', 1)
        redis.call('HINCRBYFLOAT', hash, 's:' .. name .. ':s', score[2])
        redis.call('HINCRBYFLOAT', hash, 's:' .. name .. ':q', score[3])
        redis.call('SADD', P .. 'pending', key)
      end
    end
    record[id] = head .. mask
    if home[id] then updated[id] = true end
    matched = matched + 1
  end
end
local fields = {}
for i = 1, n_calls do
  fields[#fields + 1] = ids[i]
  fields[#fields + 1] = record[ids[i]]
end
for j = 1, n_late do
  if record[of[j]] then
    fields[#fields + 1] = ids[n_calls + j]
    fields[#fields + 1] = ''  -- a late score's id: seen, and no call
  end
end
if #fields > 0 then
  redis.call('HSET', seen .. cur, unpack(fields))
  redis.call('HINCRBY', meta, cur .. ':count', #fields / 2)
end
for id in pairs(updated) do redis.call('HSET', home[id], id, record[id]) end
local names = {}
for id, name in pairs(batch_prompts) do
  names[#names + 1] = id
  names[#names + 1] = name
end
if #names > 0 then redis.call('HSET', P .. 'prompt_names', unpack(names)) end
for key, parts in pairs(cjson.decode(ARGV[3])) do
  local hash = P .. 'agg:' .. key
  for field, value in pairs(parts[1]) do redis.call('HINCRBY', hash, field, value) end
  for field, value in pairs(parts[2]) do redis.call('HINCRBYFLOAT', hash, field, value) end
  redis.call('SADD', P .. 'pending', key)
end
return {'ok', #fields / 2, n_late - matched}
""".replace("$ARMS", ", ".join(f"{code.decode()}='{arm}'" for arm, code in ARM_CODES.items()))

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

_SET_ASIDE = """
local P, batch = KEYS[1], ARGV[1]
for i = 2, #ARGV, 2 do
  local key = ARGV[i]
  local taken = P .. 'batch:' .. batch .. ':' .. key
  if redis.call('EXISTS', taken) == 1 then
    redis.call('RENAME', taken, P .. 'unapplied:' .. batch .. ':' .. key)
    redis.call('HSET', P .. 'unapplied', batch .. ':' .. key, ARGV[i + 1])
  end
  redis.call('SREM', P .. 'batch:' .. batch, key)
end
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
class CallGroup:
    """Calls of one score-name scope carrying the same score names: ``positions`` are the calls'
    0-based places in ``events_add``'s ``calls``."""

    scope: str
    names: list[str]
    positions: list[int]


@dataclass(frozen=True)
class AddResult:
    """What the ingest script did: ``added`` ids (calls, and late scores that found their call)
    and ``unmatched`` late scores (their call unknown: not stored); or, with nothing written,
    the 0-based positions (calls first, then late scores) of ``duplicates``, or ``busy`` (the
    backlog is over its bound), or the late scores of calls of ``refused_prompts`` (a key
    limited to other prompts), or the (position, name) of ``refused_score_names`` (no room in
    the call's scope)."""

    added: int = 0
    unmatched: int = 0
    duplicates: tuple[int, ...] = ()
    busy: bool = False
    refused_prompts: tuple[int, ...] = ()
    refused_score_names: tuple[tuple[int, str], ...] = ()


def events_add(
    *,
    event_ids: list[bytes],
    calls: bytes,
    groups: list[CallGroup],
    increments: dict[str, Increments],
    late_of: list[bytes],
    late_scores: list[list[tuple[str, str, str]]],
    batch_prompts: dict[int, str],
    prompts: PromptLimits,
    now: float,
) -> AddResult:
    """Record the ids as seen, remember each call (``calls``: each one's ``call_record``) and add
    the increments; add each late score's new names to its call's arm and minute (``late_of``:
    the call's id; ``late_scores``: (name, value, value squared) as exact decimal strings).
    Nothing is written when an id was seen already, a late score's call is of a prompt outside
    ``prompts``, or a scope would carry more score names than it may (``groups``: the calls'
    names; the first new ones of the batch, calls before late scores, take the room left).
    ``event_ids`` are the calls' ids, then the late scores'. ``batch_prompts``: the calls'
    prompt names by id, kept to check keys limited to prompts."""
    reply = _run(
        _ADD,
        repr(now),
        b"".join(event_ids),
        orjson.dumps(increments_payload(increments)),
        WINDOW_SECONDS,
        settings.PROMPTRAMP_DEDUPE_MAX_IDS,
        GENERATIONS,
        settings.PROMPTRAMP_INGEST_MAX_PENDING,
        calls,
        orjson.dumps([(group.scope, group.names, [p + 1 for p in group.positions]) for group in groups]),
        b"".join(late_of),
        orjson.dumps(late_scores),
        b"" if prompts is None else orjson.dumps(prompts),
        orjson.dumps({str(prompt_id): name for prompt_id, name in batch_prompts.items()}),
        MAX_SCORE_NAMES_PER_ROLLOUT,
        MAX_SCORE_NAMES_PER_VERSION,
        SCORE_NAMES_TTL,
        client=get_request_redis(),  # a request waits on this one
    )
    assert isinstance(reply, list)
    status = reply[0]
    if status == b"ok":
        return AddResult(added=int(reply[1]), unmatched=int(reply[2]))
    if status == b"duplicates":
        return AddResult(duplicates=tuple(int(i) - 1 for i in reply[1]))
    if status == b"prompt_not_allowed":
        return AddResult(refused_prompts=tuple(int(i) - 1 for i in reply[1]))
    if status == b"too_many_score_names":
        pairs = (item.decode().split(":", 1) for item in reply[1])
        return AddResult(refused_score_names=tuple((int(position) - 1, name) for position, name in pairs))
    return AddResult(busy=True)


_call_heads: dict[str, bytes] = {}


def call_record(minute: int, series: str) -> bytes:
    """What is remembered of a call (before its score names): its minute and series, packed
    in 17 bytes (minute, prompt id, version id, rollout id or 0, the arm's letter)."""
    head = _call_heads.get(series)
    if head is None:
        where = parse_key(f"0:{series}")
        if len(_call_heads) >= 4096:
            _call_heads.clear()
        head = _call_heads[series] = struct.pack(
            ">III1s", where.prompt_id, where.version_id, where.rollout_id or 0, ARM_CODES[where.arm]
        )
    return minute.to_bytes(4, "big") + head


def score_scope(rollout_id: int | None, version_id: int) -> str:
    """Where a call's score names are numbered and limited: its rollout, else its version."""
    return str(rollout_id) if rollout_id is not None else f"v{version_id}"


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


def batch_set_aside(*, batch_id: str, reasons: dict[str, str]) -> None:
    """Move aggregates of a batch (key -> why it cannot be applied) out of it, to be kept as
    ``unapplied``; those moved before are left as they are."""
    _run(_SET_ASIDE, batch_id, *(part for item in reasons.items() for part in item))


def unapplied_count() -> int:
    """Aggregates set aside because they could not be applied."""
    return int(get_redis().hlen(PREFIX + "unapplied"))


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
