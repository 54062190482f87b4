"""The Lua scripts of the Redis store: each state change is one atomic script call.

Every script gets the key tag ``{prefix}:`` as ``ARGV[1]`` and derives its key
names from it; ``KEYS[1]`` is ``{prefix}:queues``, declared so that a cluster
client routes the call to the slot of the tag (every key of a store is in it).
The data layout is described in ``masa_jobs.stores.redis``.

Rules the scripts keep, because Redis does not roll a script back when it fails
half-way: every value read from a job hash goes through ``num``/``score``
before it is used as a number, so a corrupt record cannot raise after the
first write; a script that checks its arguments checks all of them before
its first write; and timestamps (integer microseconds) and scores are passed
on as the strings they were read as, or formatted with ``int``, since Lua
would print them with 14 digits only.

Pending jobs wait in one due index per queue (``due:<queue>``), scored by
priority level first (``PRIORITY_SPAN_MS`` per level) and due time in whole
milliseconds; the member starts with the microseconds within that
millisecond, so that jobs of one score still go by exact due time, then
attempts, then insertion. A claim reads the lowest level first, the jobs due
before now's millisecond (one score range, without the scores unless heads
of several sources are merged), then those of now's millisecond, and jumps
to the next level that holds a job (one probe), so that it reads the levels
present, not all ten; it reads only as many entries as it still needs, and
more only past the excluded ones it meets. A claim of several queues (or of
expired leases too) merges their heads by (score, member).

What a call costs is mostly the work of Lua between the commands, not the
commands: so each script carries only the prelude's helpers it names
(``_with_prelude``), the hot arguments travel packed (a new job in
``JOB_ARGS`` arguments, an outcome in one: each argument costs the client
about as much as a short field's text), and a script that moves many jobs
gathers its sorted-set changes into one command per set (``batch_for``).

A unique key is taken in ``{prefix}:unique`` (key -> job id) by the add that
stores its job; a later add answers with the id found there while that job
still holds the key (``holds``: its hash still names the key, and a period
has not ended on the server's clock), so a release the index missed can
never block a key. Claim, finish and transition clear the key on the job and
in the index when a pending or active scope ends (a job never takes a
released key back); delete and purge free it in the index.

Operator reads never cost more than their answer: ``page`` reads each index
by rank from the cursor (a few O(log n) probes, then O(limit) entries), and
a read that must look past jobs (scheduled versus enqueued share the pending
listing index) examines at most a budget of entries per call and tells the
caller where it stopped; ``finished`` counts minute by minute with
``ZCOUNT``; counts and the earliest due time probe each level of each queue
(a few O(log n) calls). Job ids are compared byte by byte (``bytes_lt``), as
Redis orders members: Lua's ``<`` on strings follows the server's locale.

The store's clock is ``TIME`` read inside the script (``clock``): due times,
lease deadlines, claim and finish times, the creation time of added jobs and
the end of a unique key's period are the server's, whatever the clocks of
the workers say. (Redis 7 replicates a script by its effects, so a script
may read ``TIME`` and then write.)
"""

from __future__ import annotations

import re

from ..records import DEFAULT_QUEUE, MAX_HISTORY_EVENTS, MAX_PRIORITY, MIN_PRIORITY

__all__ = [
    "DUE_HEAD",
    "JOB_ARGS",
    "PRIORITY_SPAN_MS",
    "PURGE_LOCK_MILLISECONDS",
    "SCRIPTS",
]

# Arguments per new job in the add and fire_schedule scripts (``job_args``).
JOB_ARGS = 5
# Milliseconds of due time one priority level spans in a due score: past any
# due time until the year 5138, and ten levels of it (1e15) stay below 2**53,
# where a score (a double) stops being an exact integer.
PRIORITY_SPAN_MS = 10**14
# Characters before the job id in a due member: 3 decimal digits of the
# microseconds within the due millisecond, 8 hex digits of attempts, 16 of seq.
DUE_HEAD = 27
# How long the purge lock lives at most. The purge script takes and releases it
# within one call, so the TTL only matters for a holder that takes it across
# calls (a tool, another version) and dies: purges pause no longer than this.
PURGE_LOCK_MILLISECONDS = 30_000
# Index entries a page reads per range command while it looks past jobs that a
# filter leaves out: few round trips inside the script, little read beyond the page.
PAGE_CHUNK = 100
_MINUTE_US = 60_000_000
# Jobs from which a script gathers its sorted-set changes into one command per
# set (the scripts' `batch_for`): below it, gathering costs more than it saves.
INDEX_BATCH_MIN = 8

_PRELUDE = """
local TAG = ARGV[1]
local K_QUEUES = TAG .. 'queues'
local K_PAUSED = TAG .. 'paused'
local K_WAKE = TAG .. 'wake'
local K_SEQ = TAG .. 'seq'
local K_UNIQUE = TAG .. 'unique'
local K_CANCEL = TAG .. 'cancel'
local K_WORKERS = TAG .. 'workers'
local K_SEEN = TAG .. 'workers:seen'
local K_CLAIMS = TAG .. 'claims'
local K_SCHEDULES = TAG .. 'schedules'
local K_CREATED = {pending = TAG .. 'created:pending', processing = TAG .. 'created:processing',
                   succeeded = TAG .. 'created:succeeded', dead = TAG .. 'created:dead',
                   cancelled = TAG .. 'created:cancelled'}
local K_DONE = {succeeded = TAG .. 'done:succeeded', dead = TAG .. 'done:dead',
                cancelled = TAG .. 'done:cancelled'}
local K_PURGE_LOCK = TAG .. 'purge-lock'
local JOB = TAG .. 'job:'
local SCHEDULE = TAG .. 'schedule:'
local PENDING = {scheduled = true, enqueued = true}
-- The listing group of each stored state: both pending states share one.
local GROUP = {scheduled = 'pending', enqueued = 'pending', processing = 'processing',
               succeeded = 'succeeded', dead = 'dead', cancelled = 'cancelled'}
local FIELDS = {'name', 'payload', 'state', 'created', 'next', 'attempts', 'last_try',
                'error', 'done', 'owner', 'lease', 'finished', 'token', 'headers', 'history',
                'queue', 'priority', 'ukey', 'uscope', 'uuntil'}
-- Enough tokens to wake every idle worker of a large fleet; the rest poll within 1 s.
local WAKE_TOKENS = 32
local MAX_EVENTS = @MAX_EVENTS@
local SPAN, LOW, HIGH = @SPAN@, @LOW@, @HIGH@
local DEFAULT_QUEUE = '@DEFAULT_QUEUE@'
local HEAD = @DUE_HEAD@

local function num(value, default)
  return tonumber(value) or default
end

-- An integer as exact text: redis.call would print a Lua number with 14 digits.
local function int(value)
  return string.format('%d', value)
end

-- The server's time in microseconds since the epoch (exact in a Lua number).
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Whether an argument is the text of an integer (a timestamp, a count).
local function is_int(value)
  return string.match(value, '^%-?%d+$') ~= nil
end

local function score(value, default)
  if tonumber(value) then return value end
  return default
end

-- Whether a sorts before b byte by byte, as Redis orders the members of a score.
local function bytes_lt(a, b)
  if a == b then return false end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The queue of a stored job: one stored before queues existed has none.
local function queue_of(value)
  if value and value ~= '' then return value end
  return DEFAULT_QUEUE
end

-- The priority level of a stored job, within LOW..HIGH (none: the default).
local function level_of(value)
  return math.max(LOW, math.min(HIGH, math.floor(num(value, LOW))))
end

local function due_key(queue)
  return TAG .. 'due:' .. queue
end

local function lease_key(queue)
  return TAG .. 'leases:' .. queue
end

-- A time in microseconds as whole milliseconds (kept within one priority
-- level's span) and the microseconds within the millisecond.
local function split_us(at)
  local ms = math.floor(at / 1000)
  local within = at - ms * 1000
  if ms >= 0 and ms < SPAN and within >= 0 and within <= 999 then return ms, within end
  return math.max(0, math.min(SPAN - 1, ms)), math.max(0, math.min(999, within))
end

-- Where a pending job sits in its queue's due index: the score is its level
-- and due millisecond; the member orders equal scores by the microsecond
-- within it, then attempts, then insertion (seq).
local function slot(nxt, attempts, seq, id, priority)
  local ms, within = split_us(tonumber(nxt) or 0)
  local level = LOW
  if priority then level = level_of(priority) end
  local m = string.format('%03d%08x%016x', within, math.max(tonumber(attempts) or 0, 0),
                          tonumber(seq) or 0)
  return level * SPAN + ms, m .. id
end

-- The due time (microseconds) of a due index entry.
local function due_us(s, m)
  local ms = tonumber(s) % SPAN
  return ms * 1000 + tonumber(string.sub(m, 1, 3))
end

local function wake(count)
  if count <= 0 then return end
  local tokens = {}
  for i = 1, math.min(count, WAKE_TOKENS) do tokens[i] = '1' end
  -- RPUSH answers the length: a list within bounds needs no trim.
  if redis.call('RPUSH', K_WAKE, unpack(tokens)) > WAKE_TOKENS then
    redis.call('LTRIM', K_WAKE, 0, WAKE_TOKENS - 1)
  end
end

-- '' is None; any other value carries one marker character before the text.
local function optional(sets, dels, field, value)
  if value == '' then
    dels[#dels + 1] = field
  else
    sets[#sets + 1] = field
    sets[#sets + 1] = string.sub(value, 2)
  end
end

local function by_name(group, name)
  return TAG .. 'name:' .. group .. ':' .. name
end

-- Values one command takes from unpack at most: Lua's C stack holds 8000.
local UNPACK_MAX = 4000

-- Sends a command once per UNPACK_MAX values of a list, after the key.
local function call_many(command, key, values)
  for i = 1, #values, UNPACK_MAX do
    redis.call(command, key, unpack(values, i, math.min(i + UNPACK_MAX - 1, #values)))
  end
end

-- A batch (`ix`) holds the sorted-set changes of a script that moves many
-- jobs until `flush` sends them: one command per set and kind, since a
-- command costs as much as several entries of one. Removals go first: a
-- script never removes and adds one member of one set. Without a batch (nil:
-- `batch_for` fewer than BATCH_MIN jobs, where keeping one costs more than
-- the commands it saves), zadd and zrem write at once.
local BATCH_MIN = @BATCH_MIN@
local function batch_for(jobs)
  if jobs >= BATCH_MIN then return {} end
  return nil
end

local function changes_of(ix, key)
  local c = ix[key]
  if not c then
    c = {rem = {}, add = {}}
    ix[key] = c
    ix[#ix + 1] = key
  end
  return c
end

local function zadd(ix, key, s, m)
  if not ix then
    redis.call('ZADD', key, s, m)
    return
  end
  local add = changes_of(ix, key).add
  add[#add + 1], add[#add + 2] = s, m
end

local function zrem(ix, key, m)
  if not ix then
    redis.call('ZREM', key, m)
    return
  end
  local rem = changes_of(ix, key).rem
  rem[#rem + 1] = m
end

local function flush(ix)
  if not ix then return end
  for _, key in ipairs(ix) do
    local c = ix[key]
    if #c.rem > 0 then call_many('ZREM', key, c.rem) end
    if #c.add > 0 then call_many('ZADD', key, c.add) end
  end
end

-- Enters a job in the listing indexes of its group: by creation, and by name.
local function list_in(group, id, created, name, ix)
  local at = score(created, '0')
  zadd(ix, K_CREATED[group], at, id)
  if name then zadd(ix, by_name(group, name), at, id) end
end

local function unlist(group, id, name, ix)
  zrem(ix, K_CREATED[group], id)
  if name then zrem(ix, by_name(group, name), id) end
end

-- Queues this script call entered in the known queues already.
local known = {}

local function push_pending(id, nxt, attempts, seq, created, name, queue, priority, ix)
  local s, m = slot(nxt, attempts, seq, id, priority)
  zadd(ix, due_key(queue), int(s), m)
  if not known[queue] then
    redis.call('SADD', K_QUEUES, queue)
    known[queue] = true
  end
  list_in('pending', id, created, name, ix)
end

-- Takes a job out of the indexes of its stored state.
local function unindex(id, state, nxt, attempts, seq, name, queue)
  local group = GROUP[state]
  if group == 'pending' then
    local _, m = slot(nxt, attempts, seq, id, nil)
    redis.call('ZREM', due_key(queue), m)
  elseif group == 'processing' then
    redis.call('ZREM', lease_key(queue), id)
  elseif group then
    redis.call('ZREM', K_DONE[state], id)
  end
  if group then unlist(group, id, name) end
end

-- The queues a call serves: the n names from ARGV[first] on, or every known
-- queue when n < 0; without the paused ones, each once. One command reads the
-- queues and the paused set both.
local function served(n, first)
  if n < 0 then return redis.call('SDIFF', K_QUEUES, K_PAUSED) end
  if n == 0 then return {} end
  local skip = {}
  for _, q in ipairs(redis.call('SMEMBERS', K_PAUSED)) do skip[q] = true end
  local out = {}
  for i = first, first + n - 1 do
    local q = ARGV[i]
    if not skip[q] then
      out[#out + 1] = q
      skip[q] = true
    end
  end
  return out
end

-- The next priority level after `level` that holds a job of a due index, or nil.
local function next_level(key, level)
  if level >= HIGH then return nil end
  local ahead = redis.call('ZRANGEBYSCORE', key, int((level + 1) * SPAN), '+inf',
                           'WITHSCORES', 'LIMIT', 0, 1)
  if #ahead == 0 then return nil end
  return math.floor(tonumber(ahead[2]) / SPAN)
end

-- The earliest due time (microseconds) in a due index, or nil when it is empty:
-- the head of each level present. Stops at a time not after `enough`.
local function earliest(key, enough)
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #head == 0 then return nil end
  local best = due_us(head[2], head[1])
  local level = math.floor(tonumber(head[2]) / SPAN)
  while best > enough do
    level = next_level(key, level)
    if not level then break end
    local first = redis.call('ZRANGEBYSCORE', key, int(level * SPAN), '+inf',
                             'WITHSCORES', 'LIMIT', 0, 1)
    best = math.min(best, due_us(first[2], first[1]))
  end
  return best
end

-- Whether job `id` still holds unique key `key` at `now`: its hash still names
-- the key (the scripts clear it when a pending or active scope ends) and, for
-- a period, the period has not ended on the server's clock.
local function holds(id, key, now)
  local f = redis.call('HMGET', JOB .. id, 'ukey', 'uscope', 'uuntil', 'state')
  if f[1] ~= key then return false end
  if f[2] == 'period' then return num(f[3], 0) > now end
  if f[2] == 'pending' then return PENDING[f[4]] == true end
  return not K_DONE[f[4]]
end

-- Frees a unique key in the index, if the index still names this job for it.
local function unindex_key(id, key)
  if key and redis.call('HGET', K_UNIQUE, key) == id then redis.call('HDEL', K_UNIQUE, key) end
end

-- Lets a job go of its key, for good: a job never takes a released key back.
local function release(id, key)
  if not key then return end
  redis.call('HDEL', JOB .. id, 'ukey')
  unindex_key(id, key)
end

-- Whether reaching a finished state ends a key of this scope (a period ends by time).
local function ends_when_finished(scope)
  return scope ~= 'period'
end

-- One history event as JSON (records.encode_history): `at` as the text of an
-- integer, the error through cjson, which escapes any text, and the worker as
-- cjson encoded it (once for a whole batch); a state name (checked by the
-- caller) needs no escaping; numbers as exact integers.
local function event(at, state, attempt, err, worker_json, started)
  local parts = {'{"at":', at, ',"state":"', state, '","attempt":', int(attempt)}
  if err then parts[#parts + 1] = ',"error":' .. cjson.encode(err) end
  if worker_json then parts[#parts + 1] = ',"worker":' .. worker_json end
  if started and tonumber(started) then
    parts[#parts + 1] = ',"started":' .. int(tonumber(started))
  end
  parts[#parts + 1] = '}'
  return table.concat(parts)
end

-- A JSON array without its first element: '[]' when it has one (or cannot be
-- read). Reads only as far as the end of that element, jumping from one
-- character that matters (brackets, braces, quotes, commas) to the next.
local function drop_first(text)
  local depth, at, quoted = 0, 2, false
  while true do
    local j = string.find(text, quoted and '["\\\\]' or '[][{}",]', at)
    if not j then return '[]' end
    local c = string.sub(text, j, j)
    at = j + 1
    if quoted then
      if c == '\\\\' then at = j + 2 else quoted = false end
    elseif c == '"' then
      quoted = true
    elseif c == '{' or c == '[' then
      depth = depth + 1
    elseif c == '}' or c == ']' then
      if depth == 0 then return '[]' end
      depth = depth - 1
    elseif depth == 0 then
      return '[' .. string.sub(text, j + 1)
    end
  end
end

-- A history (JSON array text, and how many events it holds) with one more
-- event, keeping the newest MAX_EVENTS: the text grows by string surgery,
-- and only trimming reads into it (its first event).
local function appended(history, count, ev)
  local n = math.max(num(count, 0), 0)
  if not history or not string.match(history, '^%[.*%]$') or string.match(history, '^%[%s*%]$')
  then
    return '[' .. ev .. ']', 1
  end
  while n >= MAX_EVENTS do
    history, n = drop_first(history), n - 1
    if history == '[]' then return '[' .. ev .. ']', 1 end
  end
  return string.sub(history, 1, -2) .. ',' .. ev .. ']', n + 1
end

-- The control of a new job: nil for the default queue and priority without a
-- unique key, else priority ',' bytes of the queue ',' '1' with a unique key
-- ('0' without) ',' scope ',' end of the period (microseconds after the job's
-- creation, or nothing) ','
-- then the queue and the key, which may hold any character. Returns a table of
-- them (the one of the defaults is shared: callers write only into a table
-- with a key), or nil when it cannot be read.
local DEFAULT_CONTROL = {queue = DEFAULT_QUEUE, priority = LOW}
local function control_of(value)
  if not value then return DEFAULT_CONTROL end
  local priority, size, keyed, scope, until_text, at =
    string.match(value, '^(%-?%d+),(%d+),([01]),(%l*),(%-?%d*),()')
  if not at then return nil end
  local c = {priority = tonumber(priority), scope = scope, until_text = until_text,
             queue = string.sub(value, at, at + tonumber(size) - 1)}
  if keyed == '1' then c.key = string.sub(value, at + tonumber(size)) end
  return c
end

-- A new job from its JOB_ARGS arguments at ARGV[b]: id, name, payload,
-- '<state>,<delay from creation to due time (us)>,<attempts>,<events>', and
-- the extras: nothing when the job has no last try, error, done handlers,
-- headers nor history and the default control (most jobs), else the sizes in
-- bytes of those five fields and of the control (control_of), separated by ','
-- (nothing for a field that is None), then ':' and their texts in that order.
-- Returns a table of the job, or nil when it cannot be read.
local function new_job(b)
  local state, delay, attempts, events = string.match(ARGV[b + 3],
                                                      '^(%l+),(%-?%d+),(%-?%d+),(%d+)$')
  if not state then return nil end
  local job = {b = b, id = ARGV[b], state = state, delay = tonumber(delay),
               attempts = attempts, extras = {}}
  local extras = ARGV[b + 4]
  if extras == '' then
    job.control = DEFAULT_CONTROL
    return job
  end
  local sizes = {string.match(extras, '^(%d*),(%d*),(%d*),(%d*),(%d*),(%d*):()')}
  local at = sizes[7]
  if not at then return nil end
  local texts = {}
  for i = 1, 6 do
    if sizes[i] ~= '' then
      local stop = at + tonumber(sizes[i])
      texts[i], at = string.sub(extras, at, stop - 1), stop
    end
  end
  if at ~= #extras + 1 then return nil end
  for i, field in ipairs({'last_try', 'error', 'done', 'headers', 'history'}) do
    if texts[i] then
      job.extras[#job.extras + 1], job.extras[#job.extras + 2] = field, texts[i]
    end
  end
  -- A history goes with its count of events.
  if texts[5] then
    job.extras[#job.extras + 1], job.extras[#job.extras + 2] = 'events', events
  end
  job.control = control_of(texts[6])
  if not job.control then return nil end
  return job
end

-- The index in the batch (from 0) of the first job that exists already, or nil.
-- One EXISTS of them all first: most batches have none.
local function first_existing(jobs)
  if #jobs == 1 then
    if redis.call('EXISTS', JOB .. jobs[1].id) == 1 then return jobs[1].index end
    return nil
  end
  local keys = {}
  for i, job in ipairs(jobs) do keys[i] = JOB .. job.id end
  local found = 0
  for i = 1, #keys, UNPACK_MAX do
    found = found + redis.call('EXISTS', unpack(keys, i, math.min(i + UNPACK_MAX - 1, #keys)))
  end
  if found == 0 then return nil end
  for i, key in ipairs(keys) do
    if redis.call('EXISTS', key) == 1 then return jobs[i].index end
  end
end

-- Sorts out the new jobs whose fields start at ARGV[first], JOB_ARGS per job,
-- reading only (so that a refusal comes before the first write): returns the
-- jobs answered with another job's id (pairs: index in the batch from 0, holder
-- id) and those to store (tables of new_job). A job whose unique key another
-- job holds (stored, or earlier in the batch) is answered with that job's id;
-- a stored job takes its key in the index only if it holds it (a period over
-- holds nothing). The first job in the batch that cannot be read, or that
-- would be stored under an id that exists already, refuses the batch: the
-- latter with the error DUPLICATE <index in the batch, from 0>, leaving the id
-- itself out of the reply (it may be any text).
local function sort_out(first, n, now)
  local held, kept, taken, unreadable = {}, {}, {}, nil
  for i = 0, n - 1 do
    local job = new_job(first + i * JOB_ARGS)
    if not job then
      unreadable = i
      break
    end
    local c = job.control
    if c.key and c.until_text ~= '' then
      -- Sent as an offset from the job's creation: the period ends after it
      -- on the server's clock, as the due time does, whatever the sender's.
      c.until_text = int(now + tonumber(c.until_text))
    end
    local holder = c.key and taken[c.key]
    if c.key and not holder then
      local stored = redis.call('HGET', K_UNIQUE, c.key)
      if stored and holds(stored, c.key, now) then holder = stored end
    end
    if holder then
      held[#held + 1], held[#held + 2] = i, holder
    else
      job.index = i
      kept[#kept + 1] = job
      if c.key then
        c.holds = c.scope ~= 'period' or num(c.until_text, 0) > now
        if c.holds then taken[c.key] = job.id end
      end
    end
  end
  local duplicate = first_existing(kept)
  if duplicate then
    return redis.error_reply('DUPLICATE ' .. duplicate .. ' a job with this id exists already')
  end
  if unreadable then
    return redis.error_reply('job ' .. unreadable .. ' of the batch: its state, due time, '
                             .. 'attempts, count of events or extra fields (queue, '
                             .. 'priority, unique key) cannot be read')
  end
  return held, kept
end

-- The control fields of a job hash: the default queue and priority are left
-- out (a job without them reads as theirs), and the unique ones without a key.
local function control_fields(sets, c)
  if c.queue ~= DEFAULT_QUEUE then sets[#sets + 1], sets[#sets + 2] = 'queue', c.queue end
  if c.priority ~= LOW then sets[#sets + 1], sets[#sets + 2] = 'priority', int(c.priority) end
  if not c.key then return end
  sets[#sets + 1], sets[#sets + 2] = 'ukey', c.key
  if c.scope ~= '' then sets[#sets + 1], sets[#sets + 2] = 'uscope', c.scope end
  if c.until_text ~= '' then sets[#sets + 1], sets[#sets + 2] = 'uuntil', c.until_text end
end

-- Adds the jobs whose fields start at ARGV[first], JOB_ARGS per job, but those
-- whose unique key is held; returns the pairs of those (index, holder id; every
-- other job is answered with its own id), or an error reply with nothing
-- written. Each stored job is rebased on the server's clock: created now, due
-- after the same delay as given.
local function add_jobs(first, n)
  local now = clock()
  local held, kept = sort_out(first, n, now)
  if not kept then return held end
  local created = int(now)
  local seq = redis.call('INCRBY', K_SEQ, #kept) - #kept
  local ix = batch_for(#kept)
  for _, job in ipairs(kept) do
    local id, b, c = job.id, job.b, job.control
    seq = seq + 1
    local seq_text = int(seq)
    local nxt = int(now + job.delay)
    local sets = {'name', ARGV[b + 1], 'payload', ARGV[b + 2], 'state', job.state,
                  'created', created, 'next', nxt, 'attempts', job.attempts, 'seq', seq_text}
    for _, value in ipairs(job.extras) do sets[#sets + 1] = value end
    control_fields(sets, c)
    if c.holds then redis.call('HSET', K_UNIQUE, c.key, id) end
    redis.call('HSET', JOB .. id, unpack(sets))
    push_pending(id, nxt, job.attempts, seq_text, created, ARGV[b + 1], c.queue, c.priority, ix)
  end
  flush(ix)
  wake(#kept)
  return held
end
"""
for _name, _value in {
    "MAX_EVENTS": MAX_HISTORY_EVENTS,
    "SPAN": PRIORITY_SPAN_MS,
    "LOW": MIN_PRIORITY,
    "HIGH": MAX_PRIORITY,
    "DEFAULT_QUEUE": DEFAULT_QUEUE,
    "DUE_HEAD": DUE_HEAD,
    "BATCH_MIN": INDEX_BATCH_MIN,
}.items():
    _PRELUDE = _PRELUDE.replace(f"@{_name}@", str(_value))
_PRELUDE = _PRELUDE.replace("JOB_ARGS", str(JOB_ARGS))

# ARGV: key tag, then per job: id name payload state created next attempts
# last_try error done headers history (the last five optional) events control
# (queue, priority and unique key, see control_of).
# Returns pairs: index in the batch (from 0) and id of the job that holds the unique
# key, for each job stored under another's id; every other job is stored as given.
_ADD = """
return add_jobs(2, (#ARGV - 1) / JOB_ARGS)
""".replace("JOB_ARGS", str(JOB_ARGS))

# ARGV: key tag, limit, lease (microseconds), worker id, lease token, how many
# queues (-1: every queue), the queues, then the ids never to claim.
# Returns now, the lease expiry and the claimed jobs: per job id attempts name
# payload created next error done headers control (false, or queue priority
# unique_key unique_scope unique_until; see `control`), never the history: no
# worker reads it.
#
# Due jobs are the pending ones due by now and the processing ones whose lease
# expired, of the served queues that are not paused. The heads of each queue's
# due index (level by level, lowest first) and of its leases are merged by due
# score: priority, then due time, then attempts, then insertion. An expired lease
# this claim does not take stays its holder's, token and all, so that holder can
# still renew it or record its outcome (fencing: only a new claim ends a lease).
# A claim releases the key of a job whose unique scope is pending.
_CLAIM = """
local limit, worker, token, nq = tonumber(ARGV[2]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local now = clock()
local now_text, lease = int(now), int(now + tonumber(ARGV[3]))
local now_ms, now_within = split_us(now)
-- The excluded ids are jobs the claimer still runs: an expired one stays in the
-- leases at the head of the zset, so that lookup reads past as many entries.
local first_excluded = 7 + math.max(nq, 0)
local excluded, skip = {}, #ARGV - first_excluded + 1
for i = first_excluded, #ARGV do excluded[ARGV[i]] = true end
local queues = served(nq, 7)
local heads, sources = {}, 0

-- The expired leases of a queue, up to `limit` not excluded, each placed where
-- it would sit in the due index.
local function lapsed(q)
  local key = lease_key(q)
  local ids = redis.call('ZRANGEBYSCORE', key, '-inf', now_text, 'LIMIT', 0, limit + skip)
  local got = 0
  for _, id in ipairs(ids) do
    if got >= limit then break end
    if not excluded[id] then
      local f = redis.call('HMGET', JOB .. id, 'state', 'next', 'attempts', 'seq', 'priority')
      if f[1] == 'processing' then
        local s, m = slot(f[2], f[3], f[4], id, f[5])
        heads[#heads + 1] = {score = s, member = m, id = id, queue = q, lapsed = true}
        got = got + 1
      else
        redis.call('ZREM', key, id)
      end
    end
  end
  return got
end

-- Adds to the heads the entries of a due index in a score range [from, till]
-- (texts), in order, that are not excluded, until `got` reaches `limit`;
-- `within`, when given, stops at the first entry due after that microsecond of
-- the range's one millisecond. Reads `limit - got` entries at a time, so a
-- claim reads past only the excluded entries it meets. The score of each entry
-- is read only when the heads are merged (`scored`); else the range's `score`.
-- Returns the new `got`.
local function read_due(key, q, from, till, got, within, scored, score)
  local offset = 0
  while got < limit do
    local want = limit - got
    local r
    if scored then
      r = redis.call('ZRANGEBYSCORE', key, from, till, 'WITHSCORES', 'LIMIT', offset, want)
    else
      r = redis.call('ZRANGEBYSCORE', key, from, till, 'LIMIT', offset, want)
    end
    local step = scored and 2 or 1
    for i = 1, #r, step do
      local m = r[i]
      if within and tonumber(string.sub(m, 1, 3)) > within then return got end
      local id = string.sub(m, HEAD + 1)
      if not excluded[id] then
        heads[#heads + 1] = {score = scored and tonumber(r[i + 1]) or score, member = m, id = id,
                             queue = q}
        got = got + 1
      end
    end
    if #r < want * step then return got end
    offset = offset + #r / step
  end
  return got
end

-- The due jobs of a queue's due index, up to `limit` not excluded, in order,
-- level by level (lowest first): those due before now's millisecond, then those
-- due in it by now's microsecond (their members start with it).
local function due(q, scored)
  local key = due_key(q)
  local got, level = 0, LOW
  while level do
    local base = level * SPAN
    local top = base + now_ms
    got = read_due(key, q, int(base), '(' .. int(top), got, nil, scored)
    got = read_due(key, q, int(top), int(top), got, now_within, false, top)
    if got >= limit then return got end
    level = next_level(key, level)
  end
  return got
end

-- Heads are merged by score when they come from more than one source: several
-- queues, or expired leases and a due index.
for _, q in ipairs(queues) do
  local found = lapsed(q)
  if found > 0 then sources = sources + 1 end
  local pending = due(q, #queues > 1 or found > 0)
  if pending > 0 then
    sources = sources + 1
  elseif found == 0 and redis.call('EXISTS', due_key(q), lease_key(q)) == 0 then
    -- Nothing pending nor running: a claim of every queue need not look at it.
    redis.call('SREM', K_QUEUES, q)
  end
end
if sources > 1 then
  table.sort(heads, function(a, b)
    if a.score ~= b.score then return a.score < b.score end
    return bytes_lt(a.member, b.member)
  end)
end

local out, taken, ix = {}, 0, batch_for(limit)
-- The queue, priority and unique key of a claimed job as the reply gives them:
-- false for a job of the default queue and priority without a key (most
-- jobs), else {queue, priority, key, scope, end of period}. A claim releases
-- the key of a job whose unique scope is pending.
local function control(id, key, q, priority, ukey)
  if not (ukey or priority) and q == DEFAULT_QUEUE then return false end
  local scope, till = false, false
  if ukey then
    local u = redis.call('HMGET', key, 'uscope', 'uuntil')
    scope, till = u[1], u[2]
    if scope == 'pending' then
      release(id, ukey)
      ukey = false
    end
  end
  return {q, priority, ukey, scope, till}
end
local function take(c)
  local id, key, q = c.id, JOB .. c.id, c.queue
  local f = redis.call('HMGET', key, 'attempts', 'name', 'payload', 'created', 'next',
                       'error', 'done', 'headers', 'priority', 'ukey')
  if not c.lapsed then
    zrem(ix, due_key(q), c.member)
    unlist('pending', id, f[2], ix)
  end
  if not f[2] then
    zrem(ix, lease_key(q), id)
    unlist('processing', id, nil, ix)
    return
  end
  taken = taken + 1
  local attempts = num(f[1], 0) + 1
  redis.call('HSET', key, 'state', 'processing', 'attempts', attempts,
             'last_try', now_text, 'owner', worker, 'lease', lease, 'token', token)
  zadd(ix, lease_key(q), lease, id)
  if not c.lapsed then list_in('processing', id, f[4], f[2], ix) end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, attempts, f[2], f[3]
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = f[4], f[5], f[6], f[7]
  out[n + 9], out[n + 10] = f[8], control(id, key, q, f[9], f[10])
end
for _, c in ipairs(heads) do
  if taken >= limit then break end
  take(c)
end
flush(ix)
if taken > 0 then
  -- The claimer's last claim, for the claim_again script: a claimer whose
  -- reply was lost on the wire asks for it by its token.
  local ids = {}
  for i = 1, #out, 10 do ids[#ids + 1] = out[i] end
  redis.call('HSET', K_CLAIMS, worker, token .. ' ' .. now_text .. ' ' .. lease .. ' ' ..
             table.concat(ids, ' '))
end
return {now_text, lease, out}
"""

# ARGV: key tag, worker id, lease token.
# The reply of the worker's last claim if it had that token, as the claim
# script gave it, of the jobs that claim still holds; false when it had
# another (the claim took nothing, or never ran). For a claimer whose reply
# was lost on the wire: its jobs run now, not once their leases expire.
_CLAIM_AGAIN = """
local worker, token = ARGV[2], ARGV[3]
local last = redis.call('HGET', K_CLAIMS, worker)
if not last then return false end
local last_token, now_text, lease, ids = string.match(last, '^(%S+) (%S+) (%S+) (.*)$')
if last_token ~= token then return false end
local out = {}
for id in string.gmatch(ids, '%S+') do
  local f = redis.call('HMGET', JOB .. id, 'attempts', 'name', 'payload', 'created', 'next',
                       'error', 'done', 'headers', 'priority', 'ukey', 'uscope', 'uuntil',
                       'queue', 'state', 'token', 'owner')
  if f[14] == 'processing' and f[15] == token and f[16] == worker then
    -- The control part as the claim gave it: it had released a pending
    -- scope's key, whose scope stays.
    local q, priority, ukey, scope = f[13] or DEFAULT_QUEUE, f[9], f[10], f[11]
    local control = false
    if ukey or scope or priority or q ~= DEFAULT_QUEUE then
      control = {q, priority, ukey or false, scope or false, f[12] or false}
    end
    local n = #out
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, num(f[1], 0), f[2], f[3]
    out[n + 5], out[n + 6], out[n + 7], out[n + 8] = f[4], f[5], f[6], f[7]
    out[n + 9], out[n + 10] = f[8], control
  end
end
return {now_text, lease, out}
"""

# ARGV: key tag, worker id, then one argument per outcome (see `outcome_of`).
# Returns the ids applied. A final outcome is finished at the server's now and
# ends a pending or active unique key. Each applied outcome appends an event to
# the job's history. The job keeps the token of the claim whose outcome it took
# (only a processing job's counts as a lease): an outcome sent again after its
# reply was lost finds it there, out of processing, and is answered as applied,
# not refused as if its lease had been lost.
_FINISH = """
-- An outcome: '<state>,<attempts>,<next>,<bytes of the id>,<bytes of the lease
-- token>,<bytes of the error, or nothing for none>,' then the id, the token, the
-- error and the done handlers (the rest; nothing for none). Returns a table of
-- them, or nil when it cannot be read.
local function outcome_of(text)
  local state, attempts, nxt, id_size, token_size, error_size, at =
    string.match(text, '^(%l+),(%-?%d+),(%-?%d+),(%d+),(%d+),(%d*),()')
  if not at then return nil end
  local token_at = at + tonumber(id_size)
  local stop = token_at + tonumber(token_size)
  local o = {id = string.sub(text, at, token_at - 1), token = string.sub(text, token_at, stop - 1),
             state = state, attempts = attempts, next = nxt, err = false}
  if error_size ~= '' then
    o.err, stop = string.sub(text, stop, stop + tonumber(error_size) - 1),
                  stop + tonumber(error_size)
  end
  if stop > #text + 1 then return nil end
  o.done = string.sub(text, stop)
  return o
end

-- Check the whole batch first: a refusal must come before the first write.
local outcomes = {}
for i = 3, #ARGV do
  local o = outcome_of(ARGV[i])
  if not o then
    return redis.error_reply('outcome ' .. (i - 3) .. ' of the batch cannot be read (state, '
                             .. 'attempts and due time as integers, then sizes and texts)')
  end
  if not (PENDING[o.state] or K_DONE[o.state]) then
    return redis.error_reply('job ' .. o.id .. ': ' .. o.state
                             .. ' is not the state of an outcome')
  end
  outcomes[#outcomes + 1] = o
end
local worker_json, now = cjson.encode(ARGV[2]), int(clock())
local applied, requeued, ix = {}, 0, batch_for(#outcomes)
for _, o in ipairs(outcomes) do
  local id, token = o.id, o.token
  local key = JOB .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'seq', 'created', 'name', 'last_try',
                       'history', 'events', 'queue', 'priority', 'ukey')
  if f[1] == 'processing' and f[2] == token then
    local state, attempts, nxt = o.state, o.attempts, o.next
    local history, count = appended(f[7], f[8],
                                    event(now, state, tonumber(attempts), o.err, worker_json, f[6]))
    local sets = {'state', state, 'attempts', attempts, 'next', nxt,
                  'history', history, 'events', count}
    local dels = {'owner', 'lease'}
    local queue = queue_of(f[9])
    if o.err then
      sets[#sets + 1], sets[#sets + 2] = 'error', o.err
    else
      dels[#dels + 1] = 'error'
    end
    if o.done ~= '' then
      sets[#sets + 1], sets[#sets + 2] = 'done', o.done
    else
      dels[#dels + 1] = 'done'
    end
    zrem(ix, lease_key(queue), id)
    unlist('processing', id, f[5], ix)
    if PENDING[state] then
      dels[#dels + 1] = 'finished'
      push_pending(id, nxt, attempts, f[3], f[4], f[5], queue, f[10], ix)
      requeued = requeued + 1
    else
      sets[#sets + 1], sets[#sets + 2] = 'finished', now
      zadd(ix, K_DONE[state], now, id)
      list_in(state, id, f[4], f[5], ix)
      -- Only a job with a key reads its scope.
      if f[11] and ends_when_finished(redis.call('HGET', key, 'uscope')) then
        release(id, f[11])
      end
    end
    redis.call('HSET', key, unpack(sets))
    redis.call('HDEL', key, unpack(dels))
    applied[#applied + 1] = id
  elseif f[2] == token and f[1] == o.state then
    applied[#applied + 1] = id  -- applied by an earlier send of this outcome
  end
end
flush(ix)
wake(requeued)
return applied
"""

# ARGV: key tag, lease (microseconds), then pairs: job id, lease token. Returns the ids
# renewed: those still processing under that token, even past their lease.
_EXTEND = """
local lease = int(clock() + tonumber(ARGV[2]))
local renewed = {}
for b = 3, #ARGV, 2 do
  local id = ARGV[b]
  local key = JOB .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'queue')
  if f[1] == 'processing' and f[2] == ARGV[b + 1] then
    redis.call('HSET', key, 'lease', lease)
    redis.call('ZADD', lease_key(queue_of(f[3])), lease, id)
    renewed[#renewed + 1] = id
  end
end
return renewed
"""

# ARGV: key tag, id, target state, now, expected states... Appends an event with no
# worker. A move to a finished state ends a pending or active unique key; cancelling
# a processing job publishes its id on the cancel channel, for the worker that runs it.
_TRANSITION = """
local id, target, now = ARGV[2], ARGV[3], ARGV[4]
if not is_int(now) then return redis.error_reply('now is not an integer: ' .. now) end
if not (PENDING[target] or K_DONE[target]) then
  return redis.error_reply(target .. ' is not a state an operator moves a job to')
end
local key = JOB .. id
local f = redis.call('HMGET', key, 'state', 'attempts', 'seq', 'created', 'name', 'history',
                     'events', 'next', 'queue', 'priority', 'ukey', 'uscope')
local allowed = false
for i = 5, #ARGV do
  if f[1] == ARGV[i] then allowed = true end
end
if not allowed then return false end
local queue = queue_of(f[9])
unindex(id, f[1], f[8], f[2], f[3], f[5], queue)
local history, count = appended(f[6], f[7], event(int(tonumber(now)), target, num(f[2], 0)))
if PENDING[target] then
  redis.call('HSET', key, 'state', target, 'next', now, 'history', history, 'events', count)
  redis.call('HDEL', key, 'finished', 'owner', 'lease', 'token')
  push_pending(id, now, f[2], f[3], f[4], f[5], queue, f[10])
  wake(1)
else
  redis.call('HSET', key, 'state', target, 'finished', now, 'history', history,
             'events', count)
  redis.call('HDEL', key, 'owner', 'lease', 'token')
  redis.call('ZADD', K_DONE[target], now, id)
  list_in(target, id, f[4], f[5])
  if ends_when_finished(f[12]) then release(id, f[11]) end
  if f[1] == 'processing' and target == 'cancelled' then
    -- pcall: a notice is best effort, and a refused PUBLISH (a Redis user without
    -- the channel) must not fail a transition already written.
    redis.pcall('PUBLISH', K_CANCEL, id)
  end
end
return redis.call('HMGET', key, unpack(FIELDS))
"""

# ARGV: key tag, id. A corrupt record may have any state: clear every index. Frees
# the job's unique key whatever its scope.
_DELETE = """
local id = ARGV[2]
local f = redis.call('HMGET', JOB .. id, 'attempts', 'seq', 'name', 'next', 'queue', 'ukey')
local queue = queue_of(f[5])
local _, m = slot(f[4], f[1], f[2], id, nil)
redis.call('ZREM', due_key(queue), m)
redis.call('ZREM', lease_key(queue), id)
for group, _ in pairs(K_CREATED) do unlist(group, id, f[3]) end
for _, key in pairs(K_DONE) do redis.call('ZREM', key, id) end
unindex_key(id, f[6])
return redis.call('DEL', JOB .. id)
"""

# ARGV: key tag, finished before (exclusive), most jobs removed, lock token ('' for
# none), states... With a token, removes nothing (0) while another purger holds the
# lock. Frees the unique keys of the jobs removed, whatever their scope.
_PURGE = """
local before, batch, lock = '(' .. ARGV[2], tonumber(ARGV[3]), ARGV[4]
if lock ~= '' and not redis.call('SET', K_PURGE_LOCK, lock, 'NX', 'PX', PURGE_LOCK_MS) then
  return 0
end
local removed = 0
for i = 5, #ARGV do
  local state = ARGV[i]
  local ids = redis.call('ZRANGEBYSCORE', K_DONE[state], '-inf', before,
                         'LIMIT', 0, batch - removed)
  if #ids > 0 then
    local keys = {}
    for j, id in ipairs(ids) do
      keys[j] = JOB .. id
      local f = redis.call('HMGET', keys[j], 'name', 'ukey')
      if f[1] then redis.call('ZREM', by_name(state, f[1]), id) end
      unindex_key(id, f[2])
    end
    redis.call('DEL', unpack(keys))
    redis.call('ZREM', K_CREATED[state], unpack(ids))
    redis.call('ZREMRANGEBYRANK', K_DONE[state], 0, #ids - 1)
    removed = removed + #ids
  end
  if removed >= batch then break end
end
-- Only our own lock: one that expired meanwhile may be another purger's now.
if lock ~= '' and redis.call('GET', K_PURGE_LOCK) == lock then
  redis.call('DEL', K_PURGE_LOCK)
end
return removed
""".replace("PURGE_LOCK_MS", str(PURGE_LOCK_MILLISECONDS))

# ARGV: key tag, order ('asc' or 'desc'), most jobs, created from ('' or us, inclusive),
# created until ('' or us, exclusive), after: created us and id ('' for none), pending
# filter ('', 'scheduled' or 'enqueued'), now (us), budget, name ('' or '+<name>'),
# then the groups to read (pending processing succeeded dead cancelled).
#
# Reads each group's index (created:<group>, or name:<group>:<name>) from the
# cursor in (created, id) order: the cursor's rank costs two ZCOUNTs and a
# binary search among the jobs created in the same microsecond, then ranges by
# rank read the entries. An entry is kept when the job's stored state is still
# of the group (and pending jobs pass the filter); a group stops at `most` kept
# jobs, or after `budget` entries examined. The kept jobs of all groups merge
# into one page of at most `most`.
# Returns: the position up to which the page is complete when a group ran out of
# budget (created us and id, else false and false), then pairs: id, fields.
_PAGE = """
local desc, most = ARGV[2] == 'desc', tonumber(ARGV[3])
local budget = math.max(tonumber(ARGV[10]), 1)
local from, till, at, at_id = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local only, now, name = ARGV[8], tonumber(ARGV[9]), ARGV[11]

-- Whether entry a ({score, id}) comes before entry b on the page.
local function precedes(a, b)
  if a.score ~= b.score then
    if desc then return a.score > b.score end
    return a.score < b.score
  end
  if desc then return bytes_lt(b.id, a.id) end
  return bytes_lt(a.id, b.id)
end

-- The rank of the first entry after (s, id) in ascending order (at it, or past it).
local function rank_of(key, s, id, past)
  local lo = redis.call('ZCOUNT', key, '-inf', '(' .. s)
  local hi = lo + redis.call('ZCOUNT', key, s, s)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local m = redis.call('ZRANGE', key, mid, mid)[1]
    if bytes_lt(m, id) or (past and m == id) then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- The ranks [lo, hi) of the entries within the creation bounds and after the cursor.
local function window(key)
  local lo, hi = 0, 0
  if till == '' then
    hi = redis.call('ZCARD', key)
  else
    hi = redis.call('ZCOUNT', key, '-inf', '(' .. till)
  end
  if from ~= '' then lo = redis.call('ZCOUNT', key, '-inf', '(' .. from) end
  if at ~= '' and desc then hi = math.min(hi, rank_of(key, at, at_id, false)) end
  if at ~= '' and not desc then lo = math.max(lo, rank_of(key, at, at_id, true)) end
  return lo, hi
end

local function belongs(group, id)
  local f = redis.call('HMGET', JOB .. id, 'state', 'next')
  if not f[1] or GROUP[f[1]] ~= group then return false end
  if only == '' or group ~= 'pending' then return true end
  return (num(f[2], 0) <= now) == (only == 'enqueued')
end

-- The kept entries of one group, and the last entry examined if the budget ran out.
local function scan(group, kept)
  local key = K_CREATED[group]
  if name ~= '' then key = by_name(group, string.sub(name, 2)) end
  local lo, hi = window(key)
  local found, examined = 0, 0
  while lo < hi do
    local n = math.min(hi - lo, budget - examined, math.max(most - found, PAGE_CHUNK))
    local r, first, last, step
    if desc then
      r = redis.call('ZRANGE', key, hi - n, hi - 1, 'WITHSCORES')
      hi, first, last, step = hi - n, #r - 1, 1, -2
    else
      r = redis.call('ZRANGE', key, lo, lo + n - 1, 'WITHSCORES')
      lo, first, last, step = lo + n, 1, #r - 1, 2
    end
    for j = first, last, step do
      examined = examined + 1
      if belongs(group, r[j]) then
        kept[#kept + 1] = {score = tonumber(r[j + 1]), text = r[j + 1], id = r[j]}
        found = found + 1
        if found >= most then return nil end
      end
    end
    if examined >= budget and lo < hi then
      return {score = tonumber(r[last + 1]), text = r[last + 1], id = r[last]}
    end
  end
  return nil
end

local kept, frontier = {}, nil
for i = 12, #ARGV do
  local cut = scan(ARGV[i], kept)
  if cut and (not frontier or precedes(cut, frontier)) then frontier = cut end
end
table.sort(kept, precedes)
local out = {false, false}
if frontier then out = {frontier.text, frontier.id} end
for i = 1, math.min(#kept, most) do
  local entry = kept[i]
  if frontier and precedes(frontier, entry) then break end
  out[#out + 1] = entry.id
  out[#out + 1] = redis.call('HMGET', JOB .. entry.id, unpack(FIELDS))
end
return out
""".replace("PAGE_CHUNK", str(PAGE_CHUNK))

# ARGV: key tag, finished state, since (us, inclusive), most minutes. Returns where to
# go on (us, or false when done), then pairs: minute (us), jobs finished in it. Jumps
# from one minute with jobs to the next: the cost follows the minutes, not the jobs.
_FINISHED = """
local key, since, most = K_DONE[ARGV[2]], ARGV[3], tonumber(ARGV[4])
local out = {false}
for _ = 1, most do
  local first = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #first == 0 then return out end
  local minute = math.floor(tonumber(first[2]) / MINUTE) * MINUTE
  local stop = int(minute + MINUTE)
  out[#out + 1] = int(minute)
  out[#out + 1] = redis.call('ZCOUNT', key, since, '(' .. stop)
  since = stop
end
out[1] = since
return out
""".replace("MINUTE", str(_MINUTE_US))

# ARGV: key tag, job ids. Enters each job in the listing indexes of its stored
# state (the layout before them had none by name, nor for processing jobs).
_REINDEX = """
for i = 2, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', JOB .. id, 'state', 'created', 'name')
  local group = GROUP[f[1] or '']
  if group then list_in(group, id, f[2], f[3]) end
end
return #ARGV - 1
"""

# ARGV: key tag, entries moved per call. Moves up to that many entries from the
# head of the one pending index and of the one leases zset of layout 2 to the due
# index and the leases of the default queue (the only queue of that layout; its
# members gain the microseconds within the due millisecond); returns how many it
# moved (0: done).
_RELAYOUT = """
local batch = tonumber(ARGV[2])
local old_pending, old_leases = TAG .. 'pending', TAG .. 'leases'
local pending = redis.call('ZRANGE', old_pending, 0, batch - 1, 'WITHSCORES')
local leases = redis.call('ZRANGE', old_leases, 0, batch - 1, 'WITHSCORES')
if #pending + #leases == 0 then return 0 end
redis.call('SADD', K_QUEUES, DEFAULT_QUEUE)
local members = {}
for i = 1, #pending, 2 do
  local m, at = pending[i], pending[i + 1]
  local ms, within = split_us(num(at, 0))
  redis.call('ZADD', due_key(DEFAULT_QUEUE), int(LOW * SPAN + ms),
             string.format('%03d', within) .. m)
  members[#members + 1] = m
end
if #members > 0 then redis.call('ZREM', old_pending, unpack(members)) end
local ids = {}
for i = 1, #leases, 2 do
  redis.call('ZADD', lease_key(DEFAULT_QUEUE), leases[i + 1], leases[i])
  ids[#ids + 1] = leases[i]
end
if #ids > 0 then redis.call('ZREM', old_leases, unpack(ids)) end
return (#pending + #leases) / 2
"""

# ARGV: key tag, now. Returns scheduled, enqueued, processing, succeeded, dead, cancelled.
# Per known queue and priority level present: ZCOUNTs, and a binary search among
# the jobs due in now's millisecond.
_COUNT = """
local now = tonumber(ARGV[2])
local now_ms, now_within = split_us(now)

-- How many entries of score s are due by now's microsecond (their members start
-- with it, so those come first).
local function due_at_edge(key, s)
  local first = redis.call('ZCOUNT', key, '-inf', '(' .. int(s))
  local lo, hi = first, first + redis.call('ZCOUNT', key, int(s), int(s))
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local m = redis.call('ZRANGE', key, mid, mid)[1]
    if tonumber(string.sub(m, 1, 3)) <= now_within then lo = mid + 1 else hi = mid end
  end
  return lo - first
end

local function due_count(key)
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #head == 0 then return 0 end
  local level, found = math.floor(tonumber(head[2]) / SPAN), 0
  while level do
    local top = level * SPAN + now_ms
    found = found + redis.call('ZCOUNT', key, int(level * SPAN), '(' .. int(top))
                  + due_at_edge(key, top)
    level = next_level(key, level)
  end
  return found
end

local pending, due, processing = 0, 0, 0
for _, q in ipairs(redis.call('SMEMBERS', K_QUEUES)) do
  local key = due_key(q)
  pending = pending + redis.call('ZCARD', key)
  due = due + due_count(key)
  processing = processing + redis.call('ZCARD', lease_key(q))
end
return {
  pending - due,
  due,
  processing,
  redis.call('ZCARD', K_DONE.succeeded),
  redis.call('ZCARD', K_DONE.dead),
  redis.call('ZCARD', K_DONE.cancelled),
}
"""

# ARGV: key tag, how many queues (-1: every queue), the queues. Consumes the
# wake-up tokens (the caller looks for work next) and returns the server's now,
# the earliest due time of a pending job and the earliest lease expiry (or
# false) in the served queues that are not paused, so that the caller measures
# its wait on the server's clock.
_PROBE = """
redis.call('DEL', K_WAKE)
local now = clock()
local pending, lease = nil, nil
for _, q in ipairs(served(tonumber(ARGV[2]), 3)) do
  local first = earliest(due_key(q), now)
  if first and (not pending or first < pending) then pending = first end
  local l = redis.call('ZRANGE', lease_key(q), 0, 0, 'WITHSCORES')
  if #l > 0 and (not lease or tonumber(l[2]) < lease) then lease = tonumber(l[2]) end
  if (pending and pending <= now) or (lease and lease <= now) then break end
end
local function text(at)
  if at then return int(at) end
  return false
end
return {int(now), text(pending), text(lease)}
"""

# ARGV: key tag. Returns the earliest due time of a pending job in any queue
# (paused or not), or false.
_OLDEST = """
local oldest = nil
for _, q in ipairs(redis.call('SMEMBERS', K_QUEUES)) do
  local first = earliest(due_key(q), -math.huge)
  if first and (not oldest or first < oldest) then oldest = first end
end
if oldest then return int(oldest) end
return false
"""

# ARGV: key tag, queue, paused ('1' or ''). A resume wakes the idle workers:
# the jobs of the queue are theirs to claim again.
_PAUSE_QUEUE = """
if ARGV[3] == '1' then
  redis.call('SADD', K_PAUSED, ARGV[2])
elseif redis.call('SREM', K_PAUSED, ARGV[2]) == 1 then
  wake(WAKE_TOKENS)
end
return 0
"""

# ARGV: key tag, worker id, heartbeat JSON, last seen, forget workers silent before.
_HEARTBEAT = """
redis.call('HSET', K_WORKERS, ARGV[2], ARGV[3])
redis.call('ZADD', K_SEEN, ARGV[4], ARGV[2])
local stale = redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', '(' .. ARGV[5])
if #stale > 0 then
  redis.call('HDEL', K_WORKERS, unpack(stale))
  redis.call('HDEL', K_CLAIMS, unpack(stale))
  redis.call('ZREM', K_SEEN, unpack(stale))
end
return 0
"""

# ARGV: key tag, seen since.
_WORKERS = """
local ids = redis.call('ZRANGEBYSCORE', K_SEEN, ARGV[2], '+inf')
if #ids == 0 then return {} end
return redis.call('HMGET', K_WORKERS, unpack(ids))
"""

# ARGV: key tag, worker id.
_FORGET = """
redis.call('HDEL', K_WORKERS, ARGV[2])
redis.call('HDEL', K_CLAIMS, ARGV[2])
redis.call('ZREM', K_SEEN, ARGV[2])
return 0
"""

# ARGV: key tag, id, job class, cron, time zone, next, created, updated, last (optional),
# payload (optional: the args of a schedule of an ordinary job), paused ('1' or '').
# An update keeps next unless the cron or time zone changed (a tick that fired
# meanwhile stays fired) and never touches created, last or paused.
_UPSERT_SCHEDULE = """
local key = SCHEDULE .. ARGV[2]
local old = redis.call('HMGET', key, 'cron', 'timezone', 'next')
local sets = {'job_class', ARGV[3], 'cron', ARGV[4], 'timezone', ARGV[5], 'updated', ARGV[8]}
local dels = {}
optional(sets, dels, 'payload', ARGV[10])
if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
if redis.call('EXISTS', key) == 0 then
  sets[#sets + 1], sets[#sets + 2] = 'created', ARGV[7]
  local unused = {}
  optional(sets, unused, 'last', ARGV[9])
  optional(sets, unused, 'paused', ARGV[11])
end
if not old[3] or old[1] ~= ARGV[4] or old[2] ~= ARGV[5] then
  sets[#sets + 1], sets[#sets + 2] = 'next', ARGV[6]
end
redis.call('HSET', key, unpack(sets))
redis.call('SADD', K_SCHEDULES, ARGV[2])
return 0
"""

# ARGV: key tag, schedule ids... (none: every schedule). Returns pairs: id, fields.
_SCHEDULES = """
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('SMEMBERS', K_SCHEDULES) end
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HMGET', SCHEDULE .. id, 'job_class', 'cron', 'timezone',
                             'next', 'created', 'updated', 'last', 'payload', 'paused')
end
return out
"""

# ARGV: key tag, schedule id.
_DELETE_SCHEDULE = """
redis.call('SREM', K_SCHEDULES, ARGV[2])
return redis.call('DEL', SCHEDULE .. ARGV[2])
"""

# ARGV: key tag, schedule id, paused ('1' or ''). Returns 1, or 0 when there is none.
_PAUSE_SCHEDULE = """
local key = SCHEDULE .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
if ARGV[3] == '1' then
  redis.call('HSET', key, 'paused', '1')
else
  redis.call('HDEL', key, 'paused')
end
return 1
"""

# ARGV: key tag, schedule id, expected next, new next, then the tick's job (JOB_ARGS
# fields, as for add) or nothing to skip the tick. A tick whose job's unique key is
# held fires and stores nothing, as an add would.
_FIRE_SCHEDULE = """
local key = SCHEDULE .. ARGV[2]
local state = redis.call('HMGET', key, 'next', 'paused')
if state[1] ~= ARGV[3] or state[2] then return 0 end
if #ARGV > 4 then
  local added = add_jobs(5, 1)
  if added.err then return added end
  redis.call('HSET', key, 'last', ARGV[3])
end
redis.call('HSET', key, 'next', ARGV[4])
return 1
"""


def _definitions(prelude: str) -> list[tuple[set[str], str]]:
    """The top-level definitions of the prelude, in order: the names each
    declares and its text, with the comment above it. A top-level line is a
    ``local`` statement, a comment (of the next statement) or, unindented,
    the ``end`` of a function; every other line is indented."""
    definitions: list[tuple[set[str], list[str]]] = []
    comment: list[str] = []
    for line in prelude.strip("\n").splitlines():
        declared = _DECLARED.match(line)
        if line.startswith("--"):
            comment.append(line)
        elif declared is not None:
            text = declared["function"] or declared["variables"]
            names = {name.strip() for name in text.split(",")}
            definitions.append((names, [*comment, line]))
            comment = []
        elif line.startswith(" ") or line in ("", "end"):
            definitions[-1][1].append(line)
        else:
            raise ValueError(f"the prelude has a top-level line that is no definition: {line!r}")
    if comment:
        raise ValueError("the prelude ends with a comment of no definition")
    return [(names, "\n".join(lines)) for names, lines in definitions]


_DECLARED = re.compile(r"local (?:function (?P<function>\w+)|(?P<variables>[\w, ]+?) =)")


def _with_prelude(body: str) -> str:
    """A script: the definitions of the prelude it uses (directly or through
    another definition), in prelude order, then its body. Each call runs the
    whole text, and defining every helper cost more than a short script's
    work: a script carries only the helpers its code names (a name in a
    string, or after code on a line, only brings in one helper too many)."""
    wanted = _names_in(body)
    kept: list[str] = []
    for names, text in reversed(_PRELUDE_DEFINITIONS):
        if names & wanted:
            kept.append(text)
            wanted |= _names_in(text)
    return "\n".join([*reversed(kept), body])


def _names_in(code: str) -> set[str]:
    """The words of Lua code but its comment lines."""
    lines = (line for line in code.splitlines() if not line.lstrip().startswith("--"))
    return set(_IDENTIFIER.findall("\n".join(lines)))


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_PRELUDE_DEFINITIONS = _definitions(_PRELUDE)

SCRIPTS: dict[str, str] = {
    name: _with_prelude(body)
    for name, body in {
        "add": _ADD,
        "claim": _CLAIM,
        "claim_again": _CLAIM_AGAIN,
        "finish": _FINISH,
        "extend": _EXTEND,
        "transition": _TRANSITION,
        "delete": _DELETE,
        "purge": _PURGE,
        "page": _PAGE,
        "finished": _FINISHED,
        "reindex": _REINDEX,
        "relayout": _RELAYOUT,
        "count": _COUNT,
        "probe": _PROBE,
        "oldest": _OLDEST,
        "pause_queue": _PAUSE_QUEUE,
        "heartbeat": _HEARTBEAT,
        "workers": _WORKERS,
        "forget": _FORGET,
        "upsert_schedule": _UPSERT_SCHEDULE,
        "schedules": _SCHEDULES,
        "delete_schedule": _DELETE_SCHEDULE,
        "fire_schedule": _FIRE_SCHEDULE,
        "pause_schedule": _PAUSE_SCHEDULE,
    }.items()
}
