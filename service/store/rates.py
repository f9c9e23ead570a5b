"""Rate limits: a sliding-window log per bucket, checked atomically as a worker takes a job.

A rate-limited job carries its limit in its hash (RATE_FIELD, written by the enqueue: "<limit>
<window ms> <bucket>"), so the take script (service/store/queues.py) needs no catalogue. For each job
it takes, the script reads that one field; without it the job is taken as before. With it, the
bucket's log (a sorted set of start times in ms) is trimmed to the window: below the limit, the
start is logged and the job taken; at it, the job leaves the queue for its bucket's held list, the
bucket is scored in HELD_DUE_KEY by when a slot frees, and the take goes on to the next job. So a
job over its limit blocks neither the queue nor a worker, and no window ever logs more starts than
the limit, whatever the number of workers: every check and log entry happens inside one script.

Every take first releases the held buckets that are due (a few at a time): as many of their oldest
jobs as the window has room for go back to the front of their queues, marked `released` so that
their check at the take puts them, if held again, back at the head of their bucket. A new job of a
bucket with held jobs waits behind them: a key's jobs start in order.

A start is logged when its job is taken. One taken and then given back unclaimed (its worker died
before the claim, or it expired) keeps its entry until the window passes it: the limit errs on the
safe side, and the log expires with its window.
"""

from __future__ import annotations

from redis import Redis
from rq.job import Job

from service.connection import script
from service.store.layout import (
    HELD_COUNTS_KEY,
    HELD_DUE_KEY,
    HELD_PREFIX,
    HOLD_FIELD,
    JOB_KEY_PREFIX,
    RATE_FIELD,
    RATE_LOG_PREFIX,
    queue_key,
    wake_key,
)
from service.store.wake import MAX_TOKENS

# At most this many jobs a take moves to held lists: a long run of jobs over their limit at a
# queue's head is set aside over several takes, none of them long.
MAX_HOLDS = 100
# Due buckets a take releases: the rest wait for the next take (any worker's, within WAKE_POLL).
RELEASE_BUCKETS = 10

# Lua functions the take script starts with. `now` is Redis' own clock in ms (TIME), the same for
# every worker on every machine. A held list's entries are "<queue> <job id>": the queue is needed
# to count and release an entry even after its job's hash is gone.
FUNCTIONS = """
local function parse(spec)
  local limit, window, bucket = string.match(spec, '^(%d+) (%d+) (.+)$')
  return tonumber(limit), tonumber(window), bucket
end

local function hold(id, job, limit, window, bucket, count, released, now)
  local log, held = 'RATE_LOG_PREFIX' .. bucket, 'HELD_PREFIX' .. bucket
  local due = now
  if count >= limit then  -- when enough entries leave the window for one more start
    local entry = redis.call('ZRANGE', log, count - limit, count - limit, 'WITHSCORES')
    due = tonumber(entry[2]) + window
  end
  local origin = redis.call('HGET', job, 'origin')
  local ahead = released and 0 or redis.call('LLEN', held)
  redis.call(released and 'LPUSH' or 'RPUSH', held, origin .. ' ' .. id)
  redis.call('HSET', job, 'HOLD_FIELD', 'held ' .. (due + math.floor(ahead / limit) * window))
  redis.call('ZADD', 'HELD_DUE_KEY', 'LT', due, bucket)
  redis.call('HINCRBY', 'HELD_COUNTS_KEY', origin, 1)
end

-- Whether the job may start now (its start logged), else it is held (false).
local function admit(id, job, spec, now)
  local limit, window, bucket = parse(spec)
  local log = 'RATE_LOG_PREFIX' .. bucket
  local released = redis.call('HGET', job, 'HOLD_FIELD') == 'released'
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  local count = redis.call('ZCARD', log)
  if count < limit and (released or redis.call('EXISTS', 'HELD_PREFIX' .. bucket) == 0) then
    redis.call('ZADD', log, now, now .. ':' .. id)
    redis.call('PEXPIRE', log, window)
    if released then redis.call('HDEL', job, 'HOLD_FIELD') end
    return true
  end
  hold(id, job, limit, window, bucket, count, released, now)
  return false
end

-- Put the oldest held jobs of the due buckets back at the front of their queues, as many as each
-- window has room for; reschedule each bucket that still holds jobs.
local function release(now)
  local due = redis.call('ZRANGEBYSCORE', 'HELD_DUE_KEY', '-inf', now, 'LIMIT', 0, RELEASE_BUCKETS)
  for _, bucket in ipairs(due) do
    local held, log = 'HELD_PREFIX' .. bucket, 'RATE_LOG_PREFIX' .. bucket
    local limit, window, count, free
    local back = {}
    while true do
      local entry = redis.call('LINDEX', held, 0)
      if not entry then break end
      local origin, id = string.match(entry, '^(%S+) (.+)$')
      local job = 'JOB_KEY_PREFIX' .. id
      local fields = redis.call('HMGET', job, 'status', 'HOLD_FIELD', 'RATE_FIELD')
      local waiting = fields[1] == 'queued' and fields[2] and string.sub(fields[2], 1, 5) == 'held '
      if waiting and not limit then
        limit, window = parse(fields[3])  -- a bucket's jobs all share its limit
        redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
        count = redis.call('ZCARD', log)
        free = limit - count
      end
      if waiting and free <= 0 then break end
      redis.call('LPOP', held)
      redis.call('HINCRBY', 'HELD_COUNTS_KEY', origin, -1)
      if waiting then  -- else canceled or gone meanwhile: dropped
        redis.call('HSET', job, 'HOLD_FIELD', 'released')
        back[#back + 1] = {origin, id}
        free = free - 1
      end
    end
    for k = #back, 1, -1 do  -- LPUSH in reverse: the oldest ends at the very front
      local origin, id = back[k][1], back[k][2]
      redis.call('LPUSH', 'QUEUE_KEY_PREFIX' .. origin, id)
      redis.call('RPUSH', 'WAKE_PREFIX' .. origin, '1')
      redis.call('LTRIM', 'WAKE_PREFIX' .. origin, -MAX_TOKENS, -1)
    end
    if redis.call('EXISTS', held) == 0 then
      redis.call('ZREM', 'HELD_DUE_KEY', bucket)
    else
      local rank = #back > 0 and 0 or count - limit  -- the released start now, as their takes log
      local entry = redis.call('ZRANGE', log, rank, rank, 'WITHSCORES')
      redis.call('ZADD', 'HELD_DUE_KEY', (entry[2] and tonumber(entry[2]) or now) + window, bucket)
    end
  end
end
"""
for _name, _value in {
    "RATE_LOG_PREFIX": RATE_LOG_PREFIX,
    "HELD_PREFIX": HELD_PREFIX,
    "HELD_DUE_KEY": HELD_DUE_KEY,
    "HELD_COUNTS_KEY": HELD_COUNTS_KEY,
    "HOLD_FIELD": HOLD_FIELD,
    "RATE_FIELD": RATE_FIELD,
    "JOB_KEY_PREFIX": JOB_KEY_PREFIX,
    "QUEUE_KEY_PREFIX": queue_key(""),
    "WAKE_PREFIX": wake_key(""),
    "MAX_TOKENS": str(MAX_TOKENS),
    "RELEASE_BUCKETS": str(RELEASE_BUCKETS),
}.items():
    FUNCTIONS = FUNCTIONS.replace(_name, _value)

# KEYS: the job's hash. ARGV: the job id.
# A held job leaves its bucket's held list (a cancel): counted out at once, not at its release.
_UNHOLD = (
    FUNCTIONS
    + """
local hold, spec, origin = unpack(redis.call('HMGET', KEYS[1], 'HOLD_FIELD', 'RATE_FIELD', 'origin'))
if not hold then return 0 end
redis.call('HDEL', KEYS[1], 'HOLD_FIELD')  -- 'released' too: a later requeue starts in line
if string.sub(hold, 1, 5) ~= 'held ' or not spec then return 0 end
local _, _, bucket = parse(spec)
if redis.call('LREM', 'HELD_PREFIX' .. bucket, 1, origin .. ' ' .. ARGV[1]) == 1 then
  redis.call('HINCRBY', 'HELD_COUNTS_KEY', origin, -1)
end
return 1
""".replace("HOLD_FIELD", HOLD_FIELD)
    .replace("RATE_FIELD", RATE_FIELD)
    .replace("HELD_PREFIX", HELD_PREFIX)
    .replace("HELD_COUNTS_KEY", HELD_COUNTS_KEY)
)


def unhold(connection: Redis, job: Job) -> bool:
    """Take a job its rate limit holds out of its bucket (before a cancel); False if it is not held."""
    return bool(script(connection, _UNHOLD)(keys=[job.key], args=[job.id], client=connection))
