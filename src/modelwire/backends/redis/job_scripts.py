"""The Lua scripts of ``RedisJobStore``: every multi-key change of a job runs as one script, atomically.

Why scripts. A claim reads the queue, checks the job and moves it to ``running`` under a lease; a result
write checks the lease owner, replaces rows and counts them; a cancel flips the status and acknowledges the
queue entry. Each must happen entirely or not at all, and Redis runs a script with nothing interleaved, so
the owner checks of ``renew``/``write_results``/``finish`` cannot race a reclaim or a cancel.

Time. Every timestamp and lease comes from the Redis server's clock (``TIME``), one clock for workers on
any number of hosts, and the same clock that drives the stream's idle times.

Leases are the pending entries of the stream. A job being run is an entry in the consumer group's pending
list (PEL), owned by the worker. Claiming, renewing and writing results set that entry's idle time to
``HORIZON - lease`` (``XCLAIM ... IDLE``), so the entry's idle time reaches ``HORIZON`` exactly when the
lease runs out, whatever lease each worker uses; ``XAUTOCLAIM`` with min-idle ``HORIZON`` then hands out
exactly the entries whose lease expired (the worker died), and a job given back (released, or re-queued
after a failed attempt) is set to ``HORIZON`` at once: first in line for the next claim. The job hash keeps
``lease_owner`` / ``lease_expires_at`` for the owner checks and for display.

The transition table is ``jobs/states.py``'s, rendered into the scripts (``TRANSITIONS`` below), so the
Lua code asks the same table the Python code does.

Retries. A client retries a call whose connection dropped, so a script may run twice: the commit of an
upload already committed answers as the first did; a second claim takes a second job, whose lease then
runs out and which another worker runs (one attempt wasted, nothing lost); result writes replace; a
second cancel or retry is refused as for a final job.

Keys: see ``RedisJobStore``'s docstring. KEYS are not declared per script (the prefix is passed in
ARGV[1]): the store needs one Redis node (or a primary with replicas), not a Redis Cluster.
"""

from __future__ import annotations

from modelwire.jobs.states import FINAL, TRANSITIONS

__all__ = ["HORIZON_MS", "SCRIPTS"]

HORIZON_MS = 365 * 86400 * 1000
"""A pending entry this idle is due: see the module docstring. Leases are capped at it."""

_TABLE = ", ".join(
    f"['{status.value}:{trigger.value}'] = '{target.value}'"
    for (status, trigger), target in sorted(TRANSITIONS.items())
)
_FINAL = ", ".join(f"['{status.value}'] = true" for status in sorted(FINAL))

_PRELUDE = f"""
local P = ARGV[1]
local Q, G = P .. 'queue', 'workers'
local HORIZON = {HORIZON_MS}
local TRANSITIONS = {{{_TABLE}}}
local FINAL = {{{_FINAL}}}
local function transition(status, trigger) return TRANSITIONS[status .. ':' .. trigger] end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function field(job, name) return redis.call('HGET', job, name) end
local function move(id, seq, from, to)
  if from ~= to then
    redis.call('ZREM', P .. 'status:' .. from, id)
    redis.call('ZADD', P .. 'status:' .. to, seq, id)
  end
end
-- the pending entry ``entry`` owned by ``owner``, due in ``ms`` (0: due now)
local function due_in(entry, owner, ms)
  redis.call('XCLAIM', Q, G, owner, 0, entry, 'IDLE', HORIZON - math.min(HORIZON, ms), 'JUSTID')
end
local function unqueue(job)
  local entry = field(job, 'entry')
  if entry then
    redis.call('XACK', Q, G, entry)
    redis.call('XDEL', Q, entry)
    redis.call('HDEL', job, 'entry')
  end
end
-- a job that reached a final state: out of the queue, into the retention index, webhook pending
local function ended(job, id, t)
  unqueue(job)
  redis.call('HDEL', job, 'lease_owner', 'lease_expires_at')
  redis.call('ZADD', P .. 'finished', t, id)
  if field(job, 'callback_url') then
    redis.call('HSET', job, 'webhook_status', 'pending')
    redis.call('ZADD', P .. 'webhooks', field(job, 'seq'), id)
  else
    redis.call('HDEL', job, 'webhook_status')
  end
end
-- the job's hash when ``owner`` holds its lease and it is running, else nil
local function owned(id, owner)
  local job = P .. 'job:' .. id
  local h = redis.call('HMGET', job, 'status', 'lease_owner')
  if h[1] == 'running' and h[2] == owner then return job end
  return nil
end
"""

_COMMIT = """
local draft, id, total, key = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local draft_key = P .. 'draft:' .. draft
if redis.call('EXISTS', P .. 'job:' .. id) == 1 then return {1, id} end  -- run twice (a retried call)
if key ~= '' then
  local existing = redis.call('GET', P .. 'idem:' .. key)
  if existing then
    redis.call('DEL', draft_key)
    redis.call('ZREM', P .. 'drafts', draft)
    return {0, existing}
  end
end
if redis.call('LLEN', draft_key) ~= total then return {-1, draft} end
if total > 0 then
  redis.call('RENAME', draft_key, P .. 'in:' .. id)
  redis.call('PERSIST', P .. 'in:' .. id)
end
redis.call('ZREM', P .. 'drafts', draft)
local seq = redis.call('INCR', P .. 'seq')
local t = fmt(now())
local job = P .. 'job:' .. id
redis.call('HSET', job, 'id', id, 'seq', seq, 'status', 'queued', 'total', total, 'done', 0, 'errors', 0,
  'attempts', 0, 'created_at', t, 'updated_at', t, 'webhook_attempts', '[]')
for i = 6, #ARGV, 2 do redis.call('HSET', job, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', P .. 'jobs', seq, id)
redis.call('ZADD', P .. 'status:queued', seq, id)
local owner = field(job, 'owner')
if owner then redis.call('ZADD', P .. 'owner:' .. owner, seq, id) end
if key ~= '' then redis.call('SET', P .. 'idem:' .. key, id) end
redis.call('HSET', job, 'entry', redis.call('XADD', Q, '*', 'job', id))
return {1, id}
"""

_CLAIM = """
local owner, lease = ARGV[2], math.min(HORIZON, tonumber(ARGV[3]))
local t = now()
local function take(entry, id)
  local job = P .. 'job:' .. id
  local h = redis.call('HMGET', job, 'status', 'entry', 'lease_expires_at', 'lease_owner', 'seq')
  local status, current, expires, holder, seq = h[1], h[2], h[3], h[4], h[5]
  if not status or current ~= entry then  -- purged, or an entry the job no longer uses
    redis.call('XACK', Q, G, entry)
    redis.call('XDEL', Q, entry)
    return nil
  end
  local trigger = 'claim'
  if status == 'running' then
    if expires and tonumber(expires) >= t then  -- still leased (clock edge): give the entry back
      due_in(entry, holder, math.floor((tonumber(expires) - t) * 1000))
      return nil
    end
    trigger = 'reclaim'
  end
  local to = transition(status, trigger)
  if not to then  -- final: nothing to run
    redis.call('XACK', Q, G, entry)
    redis.call('XDEL', Q, entry)
    return nil
  end
  redis.call('HSET', job, 'status', to, 'lease_owner', owner, 'lease_expires_at', fmt(t + lease / 1000),
    'updated_at', fmt(t))
  redis.call('HINCRBY', job, 'attempts', 1)
  redis.call('HSETNX', job, 'started_at', fmt(t))
  move(id, seq, status, to)
  due_in(entry, owner, lease)
  return redis.call('HGETALL', job)
end
-- first the entries whose lease ran out (a dead worker's) or that were given back, then new ones
local cursor = '0-0'
for _ = 1, 64 do
  local r = redis.call('XAUTOCLAIM', Q, G, owner, HORIZON, cursor, 'COUNT', 16)
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    local job = take(e[1], e[2][2])
    if job then return job end
  end
  if cursor == '0-0' then break end
end
for _ = 1, 64 do
  local r = redis.call('XREADGROUP', 'GROUP', G, owner, 'COUNT', 1, 'STREAMS', Q, '>')
  if not r then return nil end
  local e = r[1][2][1]
  local job = take(e[1], e[2][2])
  if job then return job end
end
return nil
"""

_RENEW = """
local id, owner, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local job = owned(id, owner)
if job then
  redis.call('HSET', job, 'lease_expires_at', fmt(now() + lease / 1000))
  due_in(field(job, 'entry'), owner, lease)
  return 'running'
end
if redis.call('HGET', P .. 'job:' .. id, 'status') == 'cancelled' then return 'cancelled' end
return nil
"""

_WRITE_RESULTS = """
local id, owner, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local job = owned(id, owner)
if not job then return 0 end
local out = P .. 'out:' .. id
local done, errors = 0, 0
for i = 5, #ARGV, 2 do
  local value = ARGV[i + 1]
  local now_error = string.sub(value, 1, 1) == '1' and 1 or 0
  if redis.call('HSETNX', out, ARGV[i], value) == 1 then
    done = done + 1
    errors = errors + now_error
  else  -- a row written before (by a worker that died, or twice): replace it, count it once
    local old = redis.call('HGET', out, ARGV[i])
    redis.call('HSET', out, ARGV[i], value)
    errors = errors + now_error - (string.sub(old, 1, 1) == '1' and 1 or 0)
  end
end
local t = now()
redis.call('HINCRBY', job, 'done', done)
redis.call('HINCRBY', job, 'errors', errors)
redis.call('HSET', job, 'lease_expires_at', fmt(t + lease / 1000), 'updated_at', fmt(t))
due_in(field(job, 'entry'), owner, lease)
return 1
"""

# Rows after ARGV[3] without a result, up to ARGV[4] of them, looking at most ARGV[5] rows (a bounded
# script); returns {last index looked at, 1 when the inputs ended, framed rows}. Rows are framed into one
# string ("<index> <length> <bytes>" each), not returned as an array: one reply element instead of hundreds
# is what makes redis-py's reply parsing cheap.
_PENDING = """
local id, after, limit, scan = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', P .. 'job:' .. id) == 0 then return nil end
local out = P .. 'out:' .. id
local rows = redis.call('LRANGE', P .. 'in:' .. id, after + 1, after + scan)
local found, count, last = {}, 0, after
for i, row in ipairs(rows) do
  last = after + i
  if redis.call('HEXISTS', out, last) == 0 then
    found[#found + 1] = last .. ' ' .. #row .. ' ' .. row
    count = count + 1
    if count >= limit then break end
  end
end
return {last, (#rows < scan and last == after + #rows) and 1 or 0, table.concat(found)}
"""

# Results of rows ARGV[3] <= index < ARGV[3] + ARGV[4], framed as _PENDING's rows; nil without the job.
_RESULTS = """
local id, offset, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', P .. 'job:' .. id) == 0 then return nil end
local fields = {}
for i = 1, limit do fields[i] = offset + i - 1 end
local values = redis.call('HMGET', P .. 'out:' .. id, unpack(fields))
local found = {}
for i, value in ipairs(values) do
  if value then found[#found + 1] = (offset + i - 1) .. ' ' .. #value .. ' ' .. value end
end
return table.concat(found)
"""

_SET_STAGE = """
local job = owned(ARGV[2], ARGV[3])
if not job then return 0 end
redis.call('HSET', job, 'stage', ARGV[4], 'updated_at', fmt(now()))
return 1
"""

_FINISH = """
local id, owner, result = ARGV[2], ARGV[3], ARGV[4]
local job = owned(id, owner)
if not job then return nil end
local to = transition('running', 'succeed')
local t = now()
redis.call('HSET', job, 'status', to, 'finished_at', fmt(t), 'updated_at', fmt(t))
if result ~= '' then redis.call('HSET', job, 'result', result) else redis.call('HDEL', job, 'result') end
redis.call('HDEL', job, 'error')
move(id, field(job, 'seq'), 'running', to)
ended(job, id, t)
return redis.call('HGETALL', job)
"""

_FAIL = """
local id, owner, error, permanent = ARGV[2], ARGV[3], ARGV[4], ARGV[5] == '1'
local job = owned(id, owner)
if not job then return nil end
local t = now()
local attempts, most = tonumber(field(job, 'attempts')), tonumber(field(job, 'max_attempts'))
redis.call('HSET', job, 'error', error, 'updated_at', fmt(t))
if not permanent and attempts < most then
  local to = transition('running', 'requeue')
  redis.call('HSET', job, 'status', to)
  redis.call('HDEL', job, 'lease_owner', 'lease_expires_at')
  move(id, field(job, 'seq'), 'running', to)
  due_in(field(job, 'entry'), owner, 0)
else
  local to = transition('running', 'fail')
  redis.call('HSET', job, 'status', to, 'attempts', math.min(attempts, most), 'finished_at', fmt(t))
  move(id, field(job, 'seq'), 'running', to)
  ended(job, id, t)
end
return redis.call('HGETALL', job)
"""

_RELEASE = """
local id, owner = ARGV[2], ARGV[3]
local job = owned(id, owner)
if not job then return 0 end
local to = transition('running', 'release')
redis.call('HSET', job, 'status', to, 'updated_at', fmt(now()),
  'attempts', math.max(tonumber(field(job, 'attempts')) - 1, 0))
redis.call('HDEL', job, 'lease_owner', 'lease_expires_at')
move(id, field(job, 'seq'), 'running', to)
due_in(field(job, 'entry'), owner, 0)
return 1
"""

_CANCEL = """
local id = ARGV[2]
local job = P .. 'job:' .. id
local status = field(job, 'status')
if not status then return {'missing'} end
local to = transition(status, 'cancel')
if not to then return {'refused', status} end
local t = now()
redis.call('HSET', job, 'status', to, 'finished_at', fmt(t), 'updated_at', fmt(t))
move(id, field(job, 'seq'), status, to)
ended(job, id, t)
return {'ok', redis.call('HGETALL', job)}
"""

_RETRY = """
local id = ARGV[2]
local job = P .. 'job:' .. id
local status = field(job, 'status')
if not status then return {'missing'} end
local to = transition(status, 'retry')
if not to then return {'refused', status} end
redis.call('HSET', job, 'status', to, 'attempts', 0, 'webhook_attempts', '[]', 'updated_at', fmt(now()))
redis.call('HDEL', job, 'error', 'finished_at', 'webhook_status', 'lease_owner', 'lease_expires_at')
move(id, field(job, 'seq'), status, to)
redis.call('ZREM', P .. 'finished', id)
redis.call('ZREM', P .. 'webhooks', id)
unqueue(job)
redis.call('HSET', job, 'entry', redis.call('XADD', Q, '*', 'job', id))
return {'ok', redis.call('HGETALL', job)}
"""

# Attempts are appended as JSON text: the stored list is never decoded (cjson would round floats).
_WEBHOOK = """
local id, attempt, status = ARGV[2], ARGV[3], ARGV[4]
local job = P .. 'job:' .. id
local attempts = field(job, 'webhook_attempts')
if not attempts then return 0 end
if attempts == '[]' then
  attempts = '[' .. attempt .. ']'
else
  attempts = string.sub(attempts, 1, -2) .. ',' .. attempt .. ']'
end
redis.call('HSET', job, 'webhook_attempts', attempts, 'webhook_status', status, 'updated_at', fmt(now()))
if status ~= 'pending' then redis.call('ZREM', P .. 'webhooks', id) end
return 1
"""

_PURGE_JOB = """
local id, before = ARGV[2], tonumber(ARGV[3])
local job = P .. 'job:' .. id
local h = redis.call('HMGET', job, 'status', 'finished_at', 'idempotency_key', 'owner')
redis.call('ZREM', P .. 'finished', id)
if not h[1] then return 0 end
if not FINAL[h[1]] or not h[2] or tonumber(h[2]) >= before then return 0 end
if h[3] and redis.call('GET', P .. 'idem:' .. h[3]) == id then redis.call('DEL', P .. 'idem:' .. h[3]) end
unqueue(job)
redis.call('DEL', job, P .. 'in:' .. id, P .. 'out:' .. id)
redis.call('ZREM', P .. 'jobs', id)
redis.call('ZREM', P .. 'status:' .. h[1], id)
redis.call('ZREM', P .. 'webhooks', id)
if h[4] then redis.call('ZREM', P .. 'owner:' .. h[4], id) end
return 1
"""

# Consumers (one per worker task ever started) with nothing pending and idle for long are forgotten; in a
# script, so no entry can be delivered to one between the check and the delete.
_FORGET_CONSUMERS = """
local idle_ms = tonumber(ARGV[2])
local removed = 0
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', Q, G)
if not ok then return 0 end
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] == 0 and info['idle'] > idle_ms then
    redis.call('XGROUP', 'DELCONSUMER', Q, G, info['name'])
    removed = removed + 1
  end
end
return removed
"""

SCRIPTS = {
    name: _PRELUDE + body
    for name, body in {
        "commit": _COMMIT,
        "claim": _CLAIM,
        "renew": _RENEW,
        "write_results": _WRITE_RESULTS,
        "pending": _PENDING,
        "results": _RESULTS,
        "set_stage": _SET_STAGE,
        "finish": _FINISH,
        "fail": _FAIL,
        "release": _RELEASE,
        "cancel": _CANCEL,
        "retry": _RETRY,
        "webhook": _WEBHOOK,
        "purge_job": _PURGE_JOB,
        "forget_consumers": _FORGET_CONSUMERS,
    }.items()
}
"""Script name → Lua source (the shared prelude, then the script)."""
