--[[
  settle: apply finished attempts (checking lock tokens), promote due delayed jobs, then,
  unless the queue is paused or held, claim up to `claim` waiting jobs within the queue's
  limits, in turns between groups (see `_claim.lua` for the order, limits and cost).

  Input:
    KEYS[1]   meta       queue flags, counters and limits (hash): paused, hold_until, ...
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
    KEYS[14]  gwaiting   waiting jobs by group, in claim order (sorted set)
    KEYS[15]  groups     groups with waiting jobs, in turn order (sorted set)
    KEYS[16]  gactive    group -> active jobs (hash; while group_concurrency is set)
    KEYS[17]  starts     job starts by time (sorted set; while a rate limit is set)
    KEYS[18]  gstarts    job starts by group, then time (sorted set; while a group rate
                         limit is set)
    KEYS[19]  events          the event stream (see `_events.lua`)
    KEYS[20]  metrics         minute -> what finished in it (hash)
    KEYS[21]  metric_minutes  the minutes of `metrics` by time (sorted set)
    KEYS[22]  deps            a parent's child records (hash; retention deletes entries)

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
    the first delayed job or schedule tick falls due; hold: when a RateLimited hold ends,
    or, when the rate limits held back every waiting job, when they let the next start;
    schedules: [id, record] of up to 10 schedules due, earliest first, reported even while
    paused or held, not fired), then each claimed job.

  Wakes: the marker, when this call changed something and jobs remain waiting, unless its
  claim shows no other worker could take one now (it claimed fewer than it asked for, or
  reached the queue's limits).

  Events (at the queue's level): per outcome applied, in order, completed
  {return_value}, failed {reason, attempts_made}, retrying {reason, delay_ms,
  attempts_made} (then delayed {run_at} when it waits), or waiting (released); waiting per
  job promoted; active {worker} per job claimed. The jobs completed and failed count in
  the minute's metrics.

  Flows: a child completed or failed for good updates its parent, which may become
  waiting or fail, in its own queue (see `_flows.lua`).
]]
--- @include "_lib"
--- @include "_claim"
--- @include "_events"
--- @include "_flows"

local Q = {meta = KEYS[1], jobs = KEYS[2], data = KEYS[3], waiting = KEYS[4],
  delayed = KEYS[5], active = KEYS[6], completed = KEYS[7], failed = KEYS[8],
  tags = KEYS[9], logs = KEYS[10], marker = KEYS[11], schedules = KEYS[12], ticks = KEYS[13],
  gwaiting = KEYS[14], groups = KEYS[15], gactive = KEYS[16], starts = KEYS[17],
  gstarts = KEYS[18], events = KEYS[19], metrics = KEYS[20], metric_minutes = KEYS[21],
  deps = KEYS[22]}

local PROMOTE_BATCH = 1000
local DUE_SCHEDULES = 10

local now = resolve_now(ARGV[1])
local outcomes = cjson.decode(ARGV[2])
local claim = tonumber(ARGV[3])
local lock_ms = tonumber(ARGV[4])
local flags = redis.call('HMGET', Q.meta, 'paused', 'hold_until', 'events',
  unpack(LIMIT_FIELDS))
local paused = flags[1] == '1'
local hold_until = tonumber(flags[2]) or 0
local limits = limits_from({unpack(flags, 4)})
count_groups = limits.group_concurrency ~= nil
local changed = false
local E = recorder(Q, now, flags[3])

-- The events of an outcome applied to the job (its record as saved).
local function record_outcome(outcome, rec)
  local kind, id = outcome[1], outcome[2]
  if kind == 'complete' then
    final_event(E, 'completed', id, embed('return_value', outcome[4]))
  elseif kind == 'fail' then
    final_event(E, 'failed', id,
      cjson.encode({reason = outcome[4], attempts_made = rec.attempts_made}))
  elseif kind == 'retry' then
    local delay = math.max(0, outcome[6])
    final_event(E, 'retrying', id, cjson.encode({reason = outcome[4], delay_ms = delay,
      attempts_made = rec.attempts_made}))
    if delay > 0 then -- else its promotion, in this call, records it waiting
      detail_event(E, 'delayed', id, cjson.encode({run_at = rec.run_at}))
    end
  else
    detail_event(E, 'waiting', id)
  end
end

-- Returns true once applied, 'again' when this very outcome was applied before (a worker
-- sends a settle again when its reply was lost), false when the job is not held with
-- this token.
local function apply(outcome, finished)
  local kind, id, token = outcome[1], outcome[2], outcome[3]
  local rec = load_job(Q, id)
  if not rec then
    return false
  end
  if rec.state ~= 'active' or rec.lock_token ~= token then
    return rec.settled_token == token and 'again' or false
  end
  rec.settled_token = token
  count_active(Q, group_of(rec), -1)
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
  if E.on then
    record_outcome(outcome, rec)
  end
  if rec.parent then
    if kind == 'complete' then
      child_ended(id, rec, 'completed', outcome[4], now)
    elseif kind == 'fail' then
      child_ended(id, rec, 'failed', outcome[4], now)
    end
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
        moving[#moving + 1] = {id = id, rec = decode_job(stored[i]), at = tonumber(due[2 * i])}
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
      detail_event(E, 'waiting', item.id)
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

local refused, finished = {}, {}
local held_before = hold_until
for _, outcome in ipairs(outcomes) do
  local applied = apply(outcome, finished)
  if applied == true then
    changed = true
  elseif not applied then
    refused[#refused + 1] = outcome[2]
  end
end
local done = tally(now)
for _, item in ipairs(finished) do
  tally_job(done, item[2], item[3] == 'completed')
end
write_tally(Q, done)
apply_retention(Q, finished, now)
if hold_until > held_before then
  redis.call('HSET', Q.meta, 'hold_until', hold_until)
end

local next_due, schedules = due_schedules(promote_due())
local reply = {false}
local open = not paused and now >= hold_until
local hold, others_may = nil, true
if claim > 0 and open then
  local claimed
  claimed, hold, others_may = claim_jobs(claimer(Q, limits, now, ARGV[6]), claim,
    now + lock_ms, ARGV[5], reply)
  changed = changed or claimed > 0
  if claimed > 0 and E.all then
    local worker = cjson.encode({worker = ARGV[5]})
    for i = 2, #reply, 3 do
      detail_event(E, 'active', reply[i], worker)
    end
  end
end
if changed and open and others_may and redis.call('ZCARD', Q.waiting) > 0 then
  wake(Q)
end
if hold_until > now then
  hold = hold_until
end
reply[1] = cjson.encode({refused = refused, now = now, next_due = next_due, hold = hold,
  schedules = schedules})
return reply
