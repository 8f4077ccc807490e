--[[
  settle: apply finished attempts (checking lock tokens), promote due delayed jobs, then,
  unless the queue is paused or held, claim up to `claim` waiting jobs.

  Input:
    KEYS[1]   meta       queue flags and counters (hash): paused, hold_until
    KEYS[2]   jobs       job id -> record (hash)
    KEYS[3]   data       job id -> data JSON (hash)
    KEYS[4]   waiting    (sorted set)
    KEYS[5]   delayed    (sorted set)
    KEYS[6]   active     by lock_until (sorted set)
    KEYS[7]   completed  (sorted set)
    KEYS[8]   failed     (sorted set)
    KEYS[9]   tags       (sorted set; retention deletes entries)
    KEYS[10]  logs       (hash; retention deletes entries)
    KEYS[11]  marker     wakes idle workers (sorted set)
    KEYS[12]  schedules  schedule id -> record (hash)
    KEYS[13]  ticks      schedule id by next run (sorted set)

    ARGV[1]  now_ms     epoch ms, or "" for the server's TIME
    ARGV[2]  outcomes   JSON array of [kind, id, token, ...]:
                          ["complete", id, token, return_value]
                          ["fail", id, token, reason, stacktrace|null]
                          ["retry", id, token, reason, stacktrace|null, delay_ms]
                          ["release", id, token, hold_ms]
    ARGV[3]  claim      how many waiting jobs to claim at most
    ARGV[4]  lock_ms    lock duration of claimed jobs
    ARGV[5]  worker_id  recorded on claimed jobs
    ARGV[6]  nonce      random per call; tokens are "<nonce>:<i>"

  Output:
    {summary, id, record, data, ...}: summary is JSON {refused, now, next_due, hold,
    schedules} (refused: ids whose outcome was refused for a stale token; next_due: when
    the first delayed job or schedule tick falls due; hold: when a RateLimited hold ends;
    schedules: [id, record] of up to 10 schedules due, earliest first, reported even while
    paused or held, not fired), then each claimed job.

  Wakes: the marker, when this call changed something and claimable jobs remain waiting.
]]
--- @include "_lib"

local Q = {meta = KEYS[1], jobs = KEYS[2], data = KEYS[3], waiting = KEYS[4],
  delayed = KEYS[5], active = KEYS[6], completed = KEYS[7], failed = KEYS[8],
  tags = KEYS[9], logs = KEYS[10], marker = KEYS[11], schedules = KEYS[12], ticks = KEYS[13]}

local PROMOTE_BATCH = 1000
local DUE_SCHEDULES = 10

local now = resolve_now(ARGV[1])
local outcomes = cjson.decode(ARGV[2])
local claim = tonumber(ARGV[3])
local lock_ms = tonumber(ARGV[4])
local flags = redis.call('HMGET', Q.meta, 'paused', 'hold_until')
local paused = flags[1] == '1'
local hold_until = tonumber(flags[2]) or 0
local changed = false

-- Returns false when the job is not held with this token.
local function apply(outcome, finished)
  local kind, id, token = outcome[1], outcome[2], outcome[3]
  local rec = load_job(Q, id)
  if not rec or rec.state ~= 'active' or rec.lock_token ~= token then
    return false
  end
  if kind == 'complete' then
    rec.attempts_made = rec.attempts_made + 1
    rec.return_value = outcome[4]
    finish(Q, id, rec, 'completed', now, finished)
  elseif kind == 'fail' then
    rec.attempts_made = rec.attempts_made + 1
    rec.failed_reason = outcome[4]
    rec.stacktrace = opt(outcome[5])
    finish(Q, id, rec, 'failed', now, finished)
  else
    rec.lock_token = nil
    rec.lock_until = nil
    redis.call('ZREM', Q.active, id)
    if kind == 'retry' then
      -- A retry due at once is due now: promotion, below, queues it behind waiting jobs.
      rec.attempts_made = rec.attempts_made + 1
      rec.failed_reason = outcome[4]
      rec.stacktrace = opt(outcome[5])
      rec.state = 'delayed'
      rec.run_at = now + math.max(0, outcome[6])
      redis.call('ZADD', Q.delayed, rec.run_at, id)
    else
      -- Released jobs keep their position: they were next, and are again.
      enqueue(Q, id, rec)
      if outcome[4] > 0 then
        hold_until = math.max(hold_until, now + outcome[4])
      end
    end
    save_job(Q, id, rec)
  end
  return true
end

-- Move due delayed jobs (in due order, then add order) to waiting; return the next due time.
local function promote_due()
  local due = redis.call('ZRANGEBYSCORE', Q.delayed, '-inf', now, 'WITHSCORES',
    'LIMIT', 0, PROMOTE_BATCH)
  if #due > 0 then
    local ids, moving = {}, {}
    for i = 1, #due, 2 do
      ids[#ids + 1] = due[i]
    end
    local stored = hmget_many(Q.jobs, ids)
    for i, id in ipairs(ids) do
      if stored[i] then
        moving[#moving + 1] = {id = id, rec = cjson.decode(stored[i]), at = tonumber(due[2 * i])}
      end
    end
    batch('ZREM', Q.delayed, ids)
    table.sort(moving, function(a, b)
      if a.at ~= b.at then return a.at < b.at end
      return a.rec.n < b.rec.n
    end)
    for _, item in ipairs(moving) do
      to_waiting(Q, item.id, item.rec)
      save_job(Q, item.id, item.rec)
    end
    changed = true
  end
  local first = redis.call('ZRANGE', Q.delayed, 0, 0, 'WITHSCORES')
  return tonumber(first[2])
end

-- The schedules due (not fired: that is a transition of its own), and the earlier of
-- `next_due` and the first tick.
local function due_schedules(next_due)
  local first = redis.call('ZRANGE', Q.ticks, 0, 0, 'WITHSCORES')
  local tick = tonumber(first[2])
  if not tick then
    return next_due, {}
  end
  local due = {}
  if tick <= now then
    local ids = redis.call('ZRANGEBYSCORE', Q.ticks, '-inf', now, 'LIMIT', 0, DUE_SCHEDULES)
    local stored = hmget_many(Q.schedules, ids)
    for i, id in ipairs(ids) do
      if stored[i] then
        due[#due + 1] = {id, stored[i]}
      end
    end
  end
  if next_due and next_due < tick then
    return next_due, due
  end
  return tick, due
end

-- Claim up to `claim` waiting jobs, reading and writing them in batches.
local function claim_jobs(reply)
  if redis.call('ZCARD', Q.waiting) == 0 then
    return -- an idle look stays read-only
  end
  local popped = redis.call('ZPOPMIN', Q.waiting, claim)
  local ids = {}
  for i = 1, #popped, 2 do
    ids[#ids + 1] = popped[i]
  end
  local stored = hmget_many(Q.jobs, ids)
  local data = hmget_many(Q.data, ids)
  local lock_until = now + lock_ms
  local records, locks = {}, {}
  for i, id in ipairs(ids) do
    if stored[i] then
      local rec = cjson.decode(stored[i])
      rec.state = 'active'
      rec.lock_token = ARGV[6] .. ':' .. i
      rec.lock_until = lock_until
      rec.processed_at = now
      rec.worker_id = ARGV[5]
      local raw = cjson.encode(rec)
      records[#records + 1] = id
      records[#records + 1] = raw
      locks[#locks + 1] = lock_until
      locks[#locks + 1] = id
      reply[#reply + 1] = id
      reply[#reply + 1] = raw
      reply[#reply + 1] = data[i]
    end
  end
  batch('HSET', Q.jobs, records)
  batch('ZADD', Q.active, locks)
  changed = true
end

local refused, finished = {}, {}
local held_before = hold_until
for _, outcome in ipairs(outcomes) do
  if apply(outcome, finished) then
    changed = true
  else
    refused[#refused + 1] = outcome[2]
  end
end
apply_retention(Q, finished, now)
if hold_until > held_before then
  redis.call('HSET', Q.meta, 'hold_until', hold_until)
end

local next_due, schedules = due_schedules(promote_due())
local reply = {false}
local open = not paused and now >= hold_until
if claim > 0 and open then
  claim_jobs(reply)
end
if changed and open and redis.call('ZCARD', Q.waiting) > 0 then
  wake(Q)
end
local hold = nil
if hold_until > now then
  hold = hold_until
end
reply[1] = cjson.encode({refused = refused, now = now, next_due = next_due, hold = hold,
  schedules = schedules})
return reply
