"""The Lua scripts of the Redis store: each state change is one atomic script call.

Every script gets the key tag ``{prefix}:`` as ``ARGV[1]`` and derives its key
names from it; ``KEYS[1]`` is ``{prefix}:pending``, declared so that a cluster
client routes the call to the slot of the tag (every key of a store is in it).
The data layout is described in ``masa_jobs.stores.redis``.

Rules the scripts keep, because Redis does not roll a script back when it fails
half-way: every value read from a job hash goes through ``num``/``score``
before it is used as a number, so a corrupt record cannot raise after the
first write; a script that checks its arguments checks all of them before
its first write; and timestamps (integer microseconds) are passed on as the
strings they were read as, or formatted with ``int``, since Lua would print
them with 14 digits only.

The store's clock is ``TIME`` read inside the script (``clock``): due times,
lease deadlines, claim and finish times and the creation time of added jobs
are the server's, whatever the clocks of the workers say. (Redis 7 replicates
a script by its effects, so a script may read ``TIME`` and then write.)
"""

from __future__ import annotations

__all__ = ["MEMBER_HEAD", "PURGE_LOCK_MILLISECONDS", "SCRIPTS"]

# Characters before the job id in a pending member: 8 hex digits of attempts, 16 of seq.
MEMBER_HEAD = 24
# How long the purge lock lives at most. The purge script takes and releases it
# within one call, so the TTL only matters for a holder that takes it across
# calls (a tool, another version) and dies: purges pause no longer than this.
PURGE_LOCK_MILLISECONDS = 30_000

_PRELUDE = """
local TAG = ARGV[1]
local K_PENDING, K_LEASES, K_WAKE = TAG .. 'pending', TAG .. 'leases', TAG .. 'wake'
local K_SEQ = TAG .. 'seq'
local K_WORKERS, K_SEEN, K_SCHEDULES = TAG .. 'workers', TAG .. 'workers:seen', TAG .. 'schedules'
local K_CREATED = {pending = TAG .. 'created:pending', succeeded = TAG .. 'created:succeeded',
                   dead = TAG .. 'created:dead', cancelled = TAG .. 'created:cancelled'}
local K_DONE = {succeeded = TAG .. 'done:succeeded', dead = TAG .. 'done:dead',
                cancelled = TAG .. 'done:cancelled'}
local K_PURGE_LOCK = TAG .. 'purge-lock'
local JOB, SCHEDULE = TAG .. 'job:', TAG .. 'schedule:'
local PENDING = {scheduled = true, enqueued = true}
local FIELDS = {'name', 'payload', 'state', 'created', 'next', 'attempts', 'last_try',
                'error', 'done', 'owner', 'lease', 'finished', 'token'}
-- Enough tokens to wake every idle worker of a large fleet; the rest poll within 1 s.
local WAKE_TOKENS = 32

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

-- Adds the jobs whose fields start at ARGV[first], 10 per job; all or none. Each
-- is rebased on the server's clock: created now, due after the same delay as given.
-- An id that exists already is refused with the error DUPLICATE <index in the
-- batch, from 0>: the id itself stays out of the reply (it may be any text).
local function add_jobs(first, n)
  for i = 0, n - 1 do
    local b = first + i * 10
    local id = ARGV[b]
    if redis.call('EXISTS', JOB .. id) == 1 then
      return redis.error_reply('DUPLICATE ' .. i .. ' a job with this id exists already')
    end
    if not (is_int(ARGV[b + 4]) and is_int(ARGV[b + 5])) then
      return redis.error_reply('job ' .. i .. ' of the batch: its created and due times '
                               .. 'are not integers')
    end
  end
  local now = clock()
  local created = int(now)
  local seq = redis.call('INCRBY', K_SEQ, n) - n
  for i = 0, n - 1 do
    local b = first + i * 10
    local id = ARGV[b]
    seq = seq + 1
    local seq_text = int(seq)
    local nxt = int(now + (tonumber(ARGV[b + 5]) - tonumber(ARGV[b + 4])))
    local sets = {'name', ARGV[b + 1], 'payload', ARGV[b + 2], 'state', ARGV[b + 3],
                  'created', created, 'next', nxt, 'attempts', ARGV[b + 6],
                  'seq', seq_text}
    local unused = {}
    optional(sets, unused, 'last_try', ARGV[b + 7])
    optional(sets, unused, 'error', ARGV[b + 8])
    optional(sets, unused, 'done', ARGV[b + 9])
    redis.call('HSET', JOB .. id, unpack(sets))
    push_pending(id, nxt, ARGV[b + 6], seq_text, created)
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

# ARGV: key tag, limit, lease (microseconds), worker id, lease token, then the ids
# never to claim.
# Returns now, the lease expiry and the claimed jobs: per job id attempts name
# payload created next error done.
#
# Expired leases are taken first (they were due before any pending job that is
# due now), directly from the leases zset; an expired lease this claim does not
# take stays its holder's, token and all, so that holder can still renew it or
# record its outcome (fencing: only a new claim ends a lease).
_CLAIM = """
local limit, worker, token = tonumber(ARGV[2]), ARGV[4], ARGV[5]
local now = clock()
local now_text, lease = int(now), int(now + tonumber(ARGV[3]))
-- The excluded ids are jobs the claimer still runs: an expired one stays in the
-- leases at the head of the zset, so the lookups read past as many entries.
local excluded, skip = {}, #ARGV - 5
for i = 6, #ARGV do excluded[ARGV[i]] = true end
local out, taken = {}, 0
local function take(id, key)
  local f = redis.call('HMGET', key, 'attempts', 'name', 'payload', 'created', 'next',
                       'error', 'done')
  if not f[2] then
    redis.call('ZREM', K_LEASES, id)
    return
  end
  taken = taken + 1
  local attempts = num(f[1], 0) + 1
  redis.call('HSET', key, 'state', 'processing', 'attempts', attempts,
             'last_try', now_text, 'owner', worker, 'lease', lease, 'token', token)
  redis.call('ZADD', K_LEASES, lease, id)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, attempts, f[2], f[3]
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = f[4], f[5], f[6], f[7]
end
local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now_text,
                           'LIMIT', 0, limit + skip)
for _, id in ipairs(expired) do
  if taken >= limit then break end
  if not excluded[id] then
    local key = JOB .. id
    if redis.call('HGET', key, 'state') == 'processing' then
      take(id, key)
    else
      redis.call('ZREM', K_LEASES, id)
    end
  end
end
if taken < limit then
  local members = redis.call('ZRANGEBYSCORE', K_PENDING, '-inf', now_text,
                             'LIMIT', 0, limit - taken + skip)
  for _, m in ipairs(members) do
    if taken >= limit then break end
    local id = string.sub(m, MEMBER_HEAD + 1)
    if not excluded[id] then
      redis.call('ZREM', K_PENDING, m)
      redis.call('ZREM', K_CREATED.pending, id)
      take(id, JOB .. id)
    end
  end
end
return {now_text, lease, out}
""".replace("MEMBER_HEAD", str(MEMBER_HEAD))

# ARGV: key tag, then per outcome: id, lease token, state, attempts, next, error, done.
# Returns the ids applied. A final outcome is finished at the server's now.
_FINISH = """
-- Check the whole batch first: a refusal must come before the first write.
for b = 2, #ARGV, 7 do
  local id, state = ARGV[b], ARGV[b + 2]
  if not (PENDING[state] or K_DONE[state]) then
    return redis.error_reply('job ' .. id .. ': ' .. state .. ' is not the state of an outcome')
  end
  if not (is_int(ARGV[b + 3]) and is_int(ARGV[b + 4])) then
    return redis.error_reply('job ' .. id .. ': its attempts and due time are not integers')
  end
end
local now = int(clock())
local applied, requeued = {}, 0
for b = 2, #ARGV, 7 do
  local id, token, state, attempts, nxt = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
                                          ARGV[b + 4]
  local key = JOB .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'seq', 'created')
  if f[1] == 'processing' and f[2] == token then
    local sets = {'state', state, 'attempts', attempts, 'next', nxt}
    local dels = {'owner', 'lease', 'token'}
    optional(sets, dels, 'error', ARGV[b + 5])
    optional(sets, dels, 'done', ARGV[b + 6])
    redis.call('ZREM', K_LEASES, id)
    if PENDING[state] then
      dels[#dels + 1] = 'finished'
      push_pending(id, nxt, attempts, f[3], f[4])
      requeued = requeued + 1
    else
      sets[#sets + 1] = 'finished'
      sets[#sets + 1] = now
      redis.call('ZADD', K_DONE[state], now, id)
      redis.call('ZADD', K_CREATED[state], score(f[4], '0'), id)
    end
    redis.call('HSET', key, unpack(sets))
    redis.call('HDEL', key, unpack(dels))
    applied[#applied + 1] = id
  end
end
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
  local f = redis.call('HMGET', key, 'state', 'token')
  if f[1] == 'processing' and f[2] == ARGV[b + 1] then
    redis.call('HSET', key, 'lease', lease)
    redis.call('ZADD', K_LEASES, lease, id)
    renewed[#renewed + 1] = id
  end
end
return renewed
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
  redis.call('HDEL', key, 'finished', 'owner', 'lease', 'token')
  push_pending(id, now, f[2], f[3], f[4])
  wake(1)
else
  redis.call('HSET', key, 'state', target, 'finished', now)
  redis.call('HDEL', key, 'owner', 'lease', 'token')
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

# ARGV: key tag, finished before (exclusive), most jobs removed, lock token ('' for
# none), states... With a token, removes nothing (0) while another purger holds the lock.
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
    for j, id in ipairs(ids) do keys[j] = JOB .. id end
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
# and returns the server's now, the earliest pending due time and lease expiry
# (or false), so that the caller measures its wait on the server's clock.
_PROBE = """
redis.call('DEL', K_WAKE)
local p = redis.call('ZRANGE', K_PENDING, 0, 0, 'WITHSCORES')
local l = redis.call('ZRANGE', K_LEASES, 0, 0, 'WITHSCORES')
return {int(clock()), p[2] or false, l[2] or false}
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

# ARGV: key tag, schedule id, expected next, new next, then the tick's job (10 fields,
# as for add) or nothing to skip the tick.
_FIRE_SCHEDULE = """
local key = SCHEDULE .. ARGV[2]
local state = redis.call('HMGET', key, 'next', 'paused')
if state[1] ~= ARGV[3] or state[2] then return 0 end
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
        "pause_schedule": _PAUSE_SCHEDULE,
    }.items()
}
