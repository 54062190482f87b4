"""The Lua scripts of the Redis store: each state change is one atomic script call.

Every script gets the key tag ``{prefix}:`` as ``ARGV[1]`` and derives its key
names from it; ``KEYS[1]`` is ``{prefix}:pending``, declared so that a cluster
client routes the call to the slot of the tag (every key of a store is in it).
The data layout is described in ``masa_jobs.stores.redis``.

Rules the scripts keep, because Redis does not roll a script back when it fails
half-way: every value read from a job hash goes through ``num``/``score``
before it is used as a number, so a corrupt record cannot raise after the
first write; and timestamps (integer microseconds) are passed on as the
strings they were read as, since Lua would print them with 14 digits only.
"""

from __future__ import annotations

__all__ = ["MEMBER_HEAD", "SCRIPTS"]

# Characters before the job id in a pending member: 8 hex digits of attempts, 16 of seq.
MEMBER_HEAD = 24

_PRELUDE = """
local TAG = ARGV[1]
local K_PENDING, K_LEASES, K_WAKE = TAG .. 'pending', TAG .. 'leases', TAG .. 'wake'
local K_SEQ = TAG .. 'seq'
local K_WORKERS, K_SEEN, K_SCHEDULES = TAG .. 'workers', TAG .. 'workers:seen', TAG .. 'schedules'
local K_CREATED = {pending = TAG .. 'created:pending', succeeded = TAG .. 'created:succeeded',
                   dead = TAG .. 'created:dead', cancelled = TAG .. 'created:cancelled'}
local K_DONE = {succeeded = TAG .. 'done:succeeded', dead = TAG .. 'done:dead',
                cancelled = TAG .. 'done:cancelled'}
local JOB, SCHEDULE = TAG .. 'job:', TAG .. 'schedule:'
local PENDING = {scheduled = true, enqueued = true}
local FIELDS = {'name', 'payload', 'state', 'created', 'next', 'attempts', 'last_try',
                'error', 'done', 'owner', 'lease', 'finished'}
-- Enough tokens to wake every idle worker of a large fleet; the rest poll within 1 s.
local WAKE_TOKENS = 32

local function num(value, default)
  return tonumber(value) or default
end

local function score(value, default)
  if tonumber(value) then return value end
  return default
end

-- Equal scores order by member: attempts first, then insertion order.
local function member(attempts, seq, id)
  return string.format('%08x%016x', math.max(num(attempts, 0), 0), num(seq, 0)) .. id
end

local function wake(count)
  if count <= 0 then return end
  local tokens = {}
  for i = 1, math.min(count, WAKE_TOKENS) do tokens[i] = '1' end
  redis.call('RPUSH', K_WAKE, unpack(tokens))
  redis.call('LTRIM', K_WAKE, 0, WAKE_TOKENS - 1)
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

local function push_pending(id, nxt, attempts, seq, created)
  redis.call('ZADD', K_PENDING, nxt, member(attempts, seq, id))
  redis.call('ZADD', K_CREATED.pending, score(created, '0'), id)
end

-- Adds the jobs whose fields start at ARGV[first], 10 per job; all or none.
local function add_jobs(first, n)
  for i = 0, n - 1 do
    local id = ARGV[first + i * 10]
    if redis.call('EXISTS', JOB .. id) == 1 then
      return redis.error_reply('a job with id ' .. id .. ' exists already')
    end
  end
  local seq = redis.call('INCRBY', K_SEQ, n) - n
  for i = 0, n - 1 do
    local b = first + i * 10
    local id = ARGV[b]
    seq = seq + 1
    local seq_text = string.format('%d', seq)
    local sets = {'name', ARGV[b + 1], 'payload', ARGV[b + 2], 'state', ARGV[b + 3],
                  'created', ARGV[b + 4], 'next', ARGV[b + 5], 'attempts', ARGV[b + 6],
                  'seq', seq_text}
    local unused = {}
    optional(sets, unused, 'last_try', ARGV[b + 7])
    optional(sets, unused, 'error', ARGV[b + 8])
    optional(sets, unused, 'done', ARGV[b + 9])
    redis.call('HSET', JOB .. id, unpack(sets))
    push_pending(id, ARGV[b + 5], ARGV[b + 6], seq_text, ARGV[b + 4])
  end
  wake(n)
  return n
end

local function unindex(id, state, attempts, seq)
  if PENDING[state] then
    redis.call('ZREM', K_PENDING, member(attempts, seq, id))
    redis.call('ZREM', K_CREATED.pending, id)
  elseif state == 'processing' then
    redis.call('ZREM', K_LEASES, id)
  elseif K_DONE[state] then
    redis.call('ZREM', K_DONE[state], id)
    redis.call('ZREM', K_CREATED[state], id)
  end
end
"""

# ARGV: key tag, then per job: id name payload state created next attempts
# last_try error done (the last three optional).
_ADD = """
return add_jobs(2, (#ARGV - 1) / 10)
"""

# ARGV: key tag, now, limit, lease expiry, worker id, expired leases moved per call.
# Returns per job: id attempts name payload created next error done.
_CLAIM = """
local now, limit, lease, worker = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, ARGV[6])
for _, id in ipairs(expired) do
  local key = JOB .. id
  local f = redis.call('HMGET', key, 'state', 'next', 'attempts', 'seq', 'created')
  redis.call('ZREM', K_LEASES, id)
  if f[1] == 'processing' then
    redis.call('HSET', key, 'state', 'enqueued')
    redis.call('HDEL', key, 'owner', 'lease')
    push_pending(id, score(f[2], now), f[3], f[4], f[5])
  end
end
local members = redis.call('ZRANGEBYSCORE', K_PENDING, '-inf', now, 'LIMIT', 0, limit)
if #members > 0 then
  redis.call('ZREMRANGEBYRANK', K_PENDING, 0, #members - 1)
end
local out = {}
for _, m in ipairs(members) do
  local id = string.sub(m, MEMBER_HEAD + 1)
  local key = JOB .. id
  redis.call('ZREM', K_CREATED.pending, id)
  local f = redis.call('HMGET', key, 'attempts', 'name', 'payload', 'created', 'next',
                       'error', 'done')
  if f[2] then
    local attempts = num(f[1], 0) + 1
    redis.call('HSET', key, 'state', 'processing', 'attempts', attempts, 'last_try', now,
               'owner', worker, 'lease', lease)
    redis.call('ZADD', K_LEASES, lease, id)
    local n = #out
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, attempts, f[2], f[3]
    out[n + 5], out[n + 6], out[n + 7], out[n + 8] = f[4], f[5], f[6], f[7]
  end
end
return out
""".replace("MEMBER_HEAD", str(MEMBER_HEAD))

# ARGV: key tag, worker id, then per outcome: id state attempts next error done finished.
_FINISH = """
local worker = ARGV[2]
local applied, requeued = 0, 0
for b = 3, #ARGV, 7 do
  local id, state, attempts, nxt = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local key = JOB .. id
  local f = redis.call('HMGET', key, 'state', 'owner', 'seq', 'created')
  if f[1] == 'processing' and f[2] == worker then
    local sets = {'state', state, 'attempts', attempts, 'next', nxt}
    local dels = {'owner', 'lease'}
    optional(sets, dels, 'error', ARGV[b + 4])
    optional(sets, dels, 'done', ARGV[b + 5])
    redis.call('ZREM', K_LEASES, id)
    if PENDING[state] then
      dels[#dels + 1] = 'finished'
      push_pending(id, nxt, attempts, f[3], f[4])
      requeued = requeued + 1
    else
      sets[#sets + 1] = 'finished'
      sets[#sets + 1] = ARGV[b + 6]
      redis.call('ZADD', K_DONE[state], ARGV[b + 6], id)
      redis.call('ZADD', K_CREATED[state], score(f[4], '0'), id)
    end
    redis.call('HSET', key, unpack(sets))
    redis.call('HDEL', key, unpack(dels))
    applied = applied + 1
  end
end
wake(requeued)
return applied
"""

# ARGV: key tag, worker id, lease expiry, job ids...
_EXTEND = """
local worker, lease = ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local key = JOB .. ARGV[i]
  local f = redis.call('HMGET', key, 'state', 'owner')
  if f[1] == 'processing' and f[2] == worker then
    redis.call('HSET', key, 'lease', lease)
    redis.call('ZADD', K_LEASES, lease, ARGV[i])
  end
end
return 0
"""

# ARGV: key tag, id, target state, now, expected states...
_TRANSITION = """
local id, target, now = ARGV[2], ARGV[3], ARGV[4]
local key = JOB .. id
local f = redis.call('HMGET', key, 'state', 'attempts', 'seq', 'created')
local allowed = false
for i = 5, #ARGV do
  if f[1] == ARGV[i] then allowed = true end
end
if not allowed then return false end
unindex(id, f[1], f[2], f[3])
if PENDING[target] then
  redis.call('HSET', key, 'state', target, 'next', now)
  redis.call('HDEL', key, 'finished', 'owner', 'lease')
  push_pending(id, now, f[2], f[3], f[4])
  wake(1)
else
  redis.call('HSET', key, 'state', target, 'finished', now)
  redis.call('HDEL', key, 'owner', 'lease')
  redis.call('ZADD', K_DONE[target], now, id)
  redis.call('ZADD', K_CREATED[target], score(f[4], '0'), id)
end
return redis.call('HMGET', key, unpack(FIELDS))
"""

# ARGV: key tag, id. A corrupt record may have any state: clear every index.
_DELETE = """
local id = ARGV[2]
local f = redis.call('HMGET', JOB .. id, 'attempts', 'seq')
redis.call('ZREM', K_PENDING, member(f[1], f[2], id))
redis.call('ZREM', K_LEASES, id)
for state, key in pairs(K_CREATED) do redis.call('ZREM', key, id) end
for state, key in pairs(K_DONE) do redis.call('ZREM', key, id) end
return redis.call('DEL', JOB .. id)
"""

# ARGV: key tag, finished before (exclusive), most jobs removed per call, states...
_PURGE = """
local before, batch = '(' .. ARGV[2], tonumber(ARGV[3])
local removed = 0
for i = 4, #ARGV do
  local state = ARGV[i]
  local ids = redis.call('ZRANGEBYSCORE', K_DONE[state], '-inf', before,
                         'LIMIT', 0, batch - removed)
  if #ids > 0 then
    local keys = {}
    for j, id in ipairs(ids) do keys[j] = JOB .. id end
    redis.call('DEL', unpack(keys))
    redis.call('ZREM', K_CREATED[state], unpack(ids))
    redis.call('ZREMRANGEBYRANK', K_DONE[state], 0, #ids - 1)
    removed = removed + #ids
  end
  if removed >= batch then break end
end
return removed
"""

# ARGV: key tag, offset, limit, then groups: pending | scheduled | enqueued |
# processing | succeeded | dead | cancelled. Returns pairs: id, fields.
_LIST = """
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local want = offset + limit
local found = {}
-- A filter by stored state reads on in chunks until enough jobs matched.
local function collect(key, only)
  local chunk = want
  if only then chunk = math.max(want, 1000) end
  local start, taken = 0, 0
  while taken < want do
    local r = redis.call('ZREVRANGE', key, start, start + chunk - 1, 'WITHSCORES')
    for j = 1, #r, 2 do
      if not only or redis.call('HGET', JOB .. r[j], 'state') == only then
        found[#found + 1] = {num(r[j + 1], 0), r[j]}
        taken = taken + 1
      end
    end
    if not only or #r < 2 * chunk then return end
    start = start + chunk
  end
end
for i = 4, #ARGV do
  local group = ARGV[i]
  if group == 'processing' then
    for _, id in ipairs(redis.call('ZRANGE', K_LEASES, 0, -1)) do
      found[#found + 1] = {num(redis.call('HGET', JOB .. id, 'created'), 0), id}
    end
  elseif PENDING[group] then
    collect(K_CREATED.pending, group)
  else
    collect(K_CREATED[group], false)
  end
end
table.sort(found, function(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  return a[2] > b[2]
end)
local out = {}
for i = offset + 1, math.min(want, #found) do
  local id = found[i][2]
  out[#out + 1] = id
  out[#out + 1] = redis.call('HMGET', JOB .. id, unpack(FIELDS))
end
return out
"""

# ARGV: key tag, now. Returns scheduled, enqueued, processing, succeeded, dead, cancelled.
_COUNT = """
local now = ARGV[2]
return {
  redis.call('ZCOUNT', K_PENDING, '(' .. now, '+inf'),
  redis.call('ZCOUNT', K_PENDING, '-inf', now),
  redis.call('ZCARD', K_LEASES),
  redis.call('ZCARD', K_DONE.succeeded),
  redis.call('ZCARD', K_DONE.dead),
  redis.call('ZCARD', K_DONE.cancelled),
}
"""

# ARGV: key tag. Consumes the wake-up tokens (the caller looks for work next)
# and returns the earliest pending due time and lease expiry, or false.
_PROBE = """
redis.call('DEL', K_WAKE)
local p = redis.call('ZRANGE', K_PENDING, 0, 0, 'WITHSCORES')
local l = redis.call('ZRANGE', K_LEASES, 0, 0, 'WITHSCORES')
return {p[2] or false, l[2] or false}
"""

# ARGV: key tag, worker id, heartbeat JSON, last seen, forget workers silent before.
_HEARTBEAT = """
redis.call('HSET', K_WORKERS, ARGV[2], ARGV[3])
redis.call('ZADD', K_SEEN, ARGV[4], ARGV[2])
local stale = redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', '(' .. ARGV[5])
if #stale > 0 then
  redis.call('HDEL', K_WORKERS, unpack(stale))
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
redis.call('ZREM', K_SEEN, ARGV[2])
return 0
"""

# ARGV: key tag, id, job class, cron, time zone, next, created, updated, last (optional).
_UPSERT_SCHEDULE = """
local key = SCHEDULE .. ARGV[2]
local sets = {'job_class', ARGV[3], 'cron', ARGV[4], 'timezone', ARGV[5], 'next', ARGV[6],
              'created', ARGV[7], 'updated', ARGV[8]}
local dels = {}
optional(sets, dels, 'last', ARGV[9])
redis.call('HSET', key, unpack(sets))
if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
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
                             'next', 'created', 'updated', 'last')
end
return out
"""

# ARGV: key tag, schedule id.
_DELETE_SCHEDULE = """
redis.call('SREM', K_SCHEDULES, ARGV[2])
return redis.call('DEL', SCHEDULE .. ARGV[2])
"""

# ARGV: key tag, schedule id, expected next, new next, then the tick's job (10 fields,
# as for add) or nothing to skip the tick.
_FIRE_SCHEDULE = """
local key = SCHEDULE .. ARGV[2]
if redis.call('HGET', key, 'next') ~= ARGV[3] then return 0 end
if #ARGV > 4 then
  local added = add_jobs(5, 1)
  if type(added) == 'table' then return added end
  redis.call('HSET', key, 'last', ARGV[3])
end
redis.call('HSET', key, 'next', ARGV[4])
return 1
"""

SCRIPTS: dict[str, str] = {
    name: _PRELUDE + body
    for name, body in {
        "add": _ADD,
        "claim": _CLAIM,
        "finish": _FINISH,
        "extend": _EXTEND,
        "transition": _TRANSITION,
        "delete": _DELETE,
        "purge": _PURGE,
        "list": _LIST,
        "count": _COUNT,
        "probe": _PROBE,
        "heartbeat": _HEARTBEAT,
        "workers": _WORKERS,
        "forget": _FORGET,
        "upsert_schedule": _UPSERT_SCHEDULE,
        "schedules": _SCHEDULES,
        "delete_schedule": _DELETE_SCHEDULE,
        "fire_schedule": _FIRE_SCHEDULE,
    }.items()
}
