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

Operator reads never cost more than their answer: ``page`` reads each index
by rank from the cursor (a few O(log n) probes, then O(limit) entries), and
a read that must look past jobs (scheduled versus enqueued share the pending
index) examines at most a budget of entries per call and tells the caller
where it stopped; ``finished`` counts minute by minute with ``ZCOUNT``. Job
ids are compared byte by byte (``bytes_lt``), as Redis orders members: Lua's
``<`` on strings follows the server's locale.

The store's clock is ``TIME`` read inside the script (``clock``): due times,
lease deadlines, claim and finish times and the creation time of added jobs
are the server's, whatever the clocks of the workers say. (Redis 7 replicates
a script by its effects, so a script may read ``TIME`` and then write.)
"""

from __future__ import annotations

from ..records import MAX_HISTORY_EVENTS

__all__ = ["JOB_ARGS", "MEMBER_HEAD", "PURGE_LOCK_MILLISECONDS", "SCRIPTS"]

# Arguments per new job in the add and fire_schedule scripts (``job_args``).
JOB_ARGS = 13

# Characters before the job id in a pending member: 8 hex digits of attempts, 16 of seq.
MEMBER_HEAD = 24
# How long the purge lock lives at most. The purge script takes and releases it
# within one call, so the TTL only matters for a holder that takes it across
# calls (a tool, another version) and dies: purges pause no longer than this.
PURGE_LOCK_MILLISECONDS = 30_000
# Index entries a page reads per range command while it looks past jobs that a
# filter leaves out: few round trips inside the script, little read beyond the page.
PAGE_CHUNK = 100
_MINUTE_US = 60_000_000

_PRELUDE = """
local TAG = ARGV[1]
local K_PENDING, K_LEASES, K_WAKE = TAG .. 'pending', TAG .. 'leases', TAG .. 'wake'
local K_SEQ = TAG .. 'seq'
local K_WORKERS, K_SEEN, K_SCHEDULES = TAG .. 'workers', TAG .. 'workers:seen', TAG .. 'schedules'
local K_CREATED = {pending = TAG .. 'created:pending', processing = TAG .. 'created:processing',
                   succeeded = TAG .. 'created:succeeded', dead = TAG .. 'created:dead',
                   cancelled = TAG .. 'created:cancelled'}
local K_DONE = {succeeded = TAG .. 'done:succeeded', dead = TAG .. 'done:dead',
                cancelled = TAG .. 'done:cancelled'}
local K_PURGE_LOCK = TAG .. 'purge-lock'
local JOB, SCHEDULE = TAG .. 'job:', TAG .. 'schedule:'
local PENDING = {scheduled = true, enqueued = true}
-- The listing group of each stored state: both pending states share one.
local GROUP = {scheduled = 'pending', enqueued = 'pending', processing = 'processing',
               succeeded = 'succeeded', dead = 'dead', cancelled = 'cancelled'}
local FIELDS = {'name', 'payload', 'state', 'created', 'next', 'attempts', 'last_try',
                'error', 'done', 'owner', 'lease', 'finished', 'token', 'headers', 'history'}
-- Enough tokens to wake every idle worker of a large fleet; the rest poll within 1 s.
local WAKE_TOKENS = 32
local MAX_EVENTS = MAX_HISTORY_EVENTS

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

local function by_name(group, name)
  return TAG .. 'name:' .. group .. ':' .. name
end

-- Enters a job in the listing indexes of its group: by creation, and by name.
local function list_in(group, id, created, name)
  local at = score(created, '0')
  redis.call('ZADD', K_CREATED[group], at, id)
  if name then redis.call('ZADD', by_name(group, name), at, id) end
end

local function unlist(group, id, name)
  redis.call('ZREM', K_CREATED[group], id)
  if name then redis.call('ZREM', by_name(group, name), id) end
end

local function push_pending(id, nxt, attempts, seq, created, name)
  redis.call('ZADD', K_PENDING, nxt, member(attempts, seq, id))
  list_in('pending', id, created, name)
end

-- Takes a job out of the indexes of its stored state.
local function unindex(id, state, attempts, seq, name)
  local group = GROUP[state]
  if group == 'pending' then
    redis.call('ZREM', K_PENDING, member(attempts, seq, id))
  elseif group == 'processing' then
    redis.call('ZREM', K_LEASES, id)
  elseif group then
    redis.call('ZREM', K_DONE[state], id)
  end
  if group then unlist(group, id, name) end
end

-- One history event as JSON (records.encode_history): the error and worker
-- through cjson, which escapes any text; a state name (checked by the caller)
-- needs no escaping; numbers as exact integers.
local function event(at, state, attempt, err, worker, started)
  local parts = {'{"at":', int(at), ',"state":"', state, '","attempt":', int(attempt)}
  if err then parts[#parts + 1] = ',"error":' .. cjson.encode(err) end
  if worker then parts[#parts + 1] = ',"worker":' .. cjson.encode(worker) end
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

-- Adds the jobs whose fields start at ARGV[first], JOB_ARGS per job; all or none.
-- Each is rebased on the server's clock: created now, due after the same delay as
-- given. An id that exists already is refused with the error DUPLICATE <index in
-- the batch, from 0>: the id itself stays out of the reply (it may be any text).
local function add_jobs(first, n)
  for i = 0, n - 1 do
    local b = first + i * JOB_ARGS
    local id = ARGV[b]
    if redis.call('EXISTS', JOB .. id) == 1 then
      return redis.error_reply('DUPLICATE ' .. i .. ' a job with this id exists already')
    end
    if not (is_int(ARGV[b + 4]) and is_int(ARGV[b + 5]) and is_int(ARGV[b + 12])) then
      return redis.error_reply('job ' .. i .. ' of the batch: its created and due times '
                               .. 'and its count of events are not integers')
    end
  end
  local now = clock()
  local created = int(now)
  local seq = redis.call('INCRBY', K_SEQ, n) - n
  for i = 0, n - 1 do
    local b = first + i * JOB_ARGS
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
    optional(sets, unused, 'headers', ARGV[b + 10])
    if ARGV[b + 11] ~= '' then
      optional(sets, unused, 'history', ARGV[b + 11])
      sets[#sets + 1], sets[#sets + 2] = 'events', ARGV[b + 12]
    end
    redis.call('HSET', JOB .. id, unpack(sets))
    push_pending(id, nxt, ARGV[b + 6], seq_text, created, ARGV[b + 1])
  end
  wake(n)
  return n
end
""".replace("MAX_HISTORY_EVENTS", str(MAX_HISTORY_EVENTS)).replace("JOB_ARGS", str(JOB_ARGS))

# ARGV: key tag, then per job: id name payload state created next attempts
# last_try error done headers history (the last five optional) events.
_ADD = """
return add_jobs(2, (#ARGV - 1) / JOB_ARGS)
""".replace("JOB_ARGS", str(JOB_ARGS))

# ARGV: key tag, limit, lease (microseconds), worker id, lease token, then the ids
# never to claim.
# Returns now, the lease expiry and the claimed jobs: per job id attempts name
# payload created next error done headers (never the history: no worker reads it).
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
-- A job from the pending index (was_pending) moves to the processing listing.
local function take(id, key, was_pending)
  local f = redis.call('HMGET', key, 'attempts', 'name', 'payload', 'created', 'next',
                       'error', 'done', 'headers')
  if was_pending then unlist('pending', id, f[2]) end
  if not f[2] then
    redis.call('ZREM', K_LEASES, id)
    unlist('processing', id, nil)
    return
  end
  taken = taken + 1
  local attempts = num(f[1], 0) + 1
  redis.call('HSET', key, 'state', 'processing', 'attempts', attempts,
             'last_try', now_text, 'owner', worker, 'lease', lease, 'token', token)
  redis.call('ZADD', K_LEASES, lease, id)
  if was_pending then list_in('processing', id, f[4], f[2]) end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, attempts, f[2], f[3]
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = f[4], f[5], f[6], f[7]
  out[n + 9] = f[8]
end
local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now_text,
                           'LIMIT', 0, limit + skip)
for _, id in ipairs(expired) do
  if taken >= limit then break end
  if not excluded[id] then
    local key = JOB .. id
    if redis.call('HGET', key, 'state') == 'processing' then
      take(id, key, false)
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
      take(id, JOB .. id, true)
    end
  end
end
return {now_text, lease, out}
""".replace("MEMBER_HEAD", str(MEMBER_HEAD))

# ARGV: key tag, worker id, then per outcome: id, lease token, state, attempts, next,
# error, done. Returns the ids applied. A final outcome is finished at the server's now.
# Each applied outcome appends an event to the job's history.
_FINISH = """
-- Check the whole batch first: a refusal must come before the first write.
for b = 3, #ARGV, 7 do
  local id, state = ARGV[b], ARGV[b + 2]
  if not (PENDING[state] or K_DONE[state]) then
    return redis.error_reply('job ' .. id .. ': ' .. state .. ' is not the state of an outcome')
  end
  if not (is_int(ARGV[b + 3]) and is_int(ARGV[b + 4])) then
    return redis.error_reply('job ' .. id .. ': its attempts and due time are not integers')
  end
end
local worker, at = ARGV[2], clock()
local now = int(at)
local applied, requeued = {}, 0
for b = 3, #ARGV, 7 do
  local id, token, state, attempts, nxt = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3],
                                          ARGV[b + 4]
  local key = JOB .. id
  local f = redis.call('HMGET', key, 'state', 'token', 'seq', 'created', 'name', 'last_try',
                       'history', 'events')
  if f[1] == 'processing' and f[2] == token then
    local err = nil
    if ARGV[b + 5] ~= '' then err = string.sub(ARGV[b + 5], 2) end
    local history, count = appended(f[7], f[8],
                                    event(at, state, tonumber(attempts), err, worker, f[6]))
    local sets = {'state', state, 'attempts', attempts, 'next', nxt,
                  'history', history, 'events', count}
    local dels = {'owner', 'lease', 'token'}
    optional(sets, dels, 'error', ARGV[b + 5])
    optional(sets, dels, 'done', ARGV[b + 6])
    redis.call('ZREM', K_LEASES, id)
    unlist('processing', id, f[5])
    if PENDING[state] then
      dels[#dels + 1] = 'finished'
      push_pending(id, nxt, attempts, f[3], f[4], f[5])
      requeued = requeued + 1
    else
      sets[#sets + 1] = 'finished'
      sets[#sets + 1] = now
      redis.call('ZADD', K_DONE[state], now, id)
      list_in(state, id, f[4], f[5])
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

# ARGV: key tag, id, target state, now, expected states... Appends an event with no worker.
_TRANSITION = """
local id, target, now = ARGV[2], ARGV[3], ARGV[4]
if not is_int(now) then return redis.error_reply('now is not an integer: ' .. now) end
if not (PENDING[target] or K_DONE[target]) then
  return redis.error_reply(target .. ' is not a state an operator moves a job to')
end
local key = JOB .. id
local f = redis.call('HMGET', key, 'state', 'attempts', 'seq', 'created', 'name', 'history',
                     'events')
local allowed = false
for i = 5, #ARGV do
  if f[1] == ARGV[i] then allowed = true end
end
if not allowed then return false end
unindex(id, f[1], f[2], f[3], f[5])
local history, count = appended(f[6], f[7], event(tonumber(now), target, num(f[2], 0)))
if PENDING[target] then
  redis.call('HSET', key, 'state', target, 'next', now, 'history', history, 'events', count)
  redis.call('HDEL', key, 'finished', 'owner', 'lease', 'token')
  push_pending(id, now, f[2], f[3], f[4], f[5])
  wake(1)
else
  redis.call('HSET', key, 'state', target, 'finished', now, 'history', history,
             'events', count)
  redis.call('HDEL', key, 'owner', 'lease', 'token')
  redis.call('ZADD', K_DONE[target], now, id)
  list_in(target, id, f[4], f[5])
end
return redis.call('HMGET', key, unpack(FIELDS))
"""

# ARGV: key tag, id. A corrupt record may have any state: clear every index.
_DELETE = """
local id = ARGV[2]
local f = redis.call('HMGET', JOB .. id, 'attempts', 'seq', 'name')
redis.call('ZREM', K_PENDING, member(f[1], f[2], id))
redis.call('ZREM', K_LEASES, id)
for group, _ in pairs(K_CREATED) do unlist(group, id, f[3]) end
for _, key in pairs(K_DONE) do redis.call('ZREM', key, id) end
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
    for j, id in ipairs(ids) do
      keys[j] = JOB .. id
      local name = redis.call('HGET', keys[j], 'name')
      if name then redis.call('ZREM', by_name(state, name), id) end
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
        "page": _PAGE,
        "finished": _FINISHED,
        "reindex": _REINDEX,
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
