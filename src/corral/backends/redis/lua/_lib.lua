--[[
  Helpers shared by the transitions, pasted by the loader where a script says
  `--- @include "_lib"`. Not a transition: it has no KEYS or ARGV of its own.

  Every helper takes the script's key table Q (part name -> key, all from KEYS), so no key
  name is ever built here. A job is one cjson record in the `jobs` hash; its data lives in
  the `data` hash; its place in its state's sorted set:
    waiting           priority * 2^32 + seq (FIFO seq counts up from 1, LIFO down from -1)
    delayed           run_at ms
    active            lock_until ms
    completed/failed  finished_at ms + (finish counter mod 1024) / 1024, newest last
]]

local PRIORITY_STEP = 4294967296 -- 2^32
local FINISH_TICKS = 1024

-- The transition's time: the caller's virtual time, else the server's clock.
local function resolve_now(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- cjson decodes JSON null to a sentinel: treat it as absent.
local function opt(value)
  if value == cjson.null then
    return nil
  end
  return value
end

local function load_job(Q, id)
  local raw = redis.call('HGET', Q.jobs, id)
  if raw then
    return cjson.decode(raw)
  end
  return nil
end

-- Store the record; returns its encoding for replies.
local function save_job(Q, id, rec)
  local raw = cjson.encode(rec)
  redis.call('HSET', Q.jobs, id, raw)
  return raw
end

-- A fresh queue position. The counters restart whenever nothing is waiting or active (no
-- stored position can then be compared with a new one), which keeps them within 2^31.
local positions_checked = false
local function next_seq(Q, lifo)
  if not positions_checked then
    positions_checked = true
    if redis.call('ZCARD', Q.waiting) == 0 and redis.call('ZCARD', Q.active) == 0 then
      redis.call('HDEL', Q.meta, 'seq', 'lseq')
    end
  end
  if lifo then
    return -redis.call('HINCRBY', Q.meta, 'lseq', 1)
  end
  return redis.call('HINCRBY', Q.meta, 'seq', 1)
end

-- Into `waiting` at the job's stored position (released and stalled jobs keep theirs).
local function enqueue(Q, id, rec)
  rec.state = 'waiting'
  redis.call('ZADD', Q.waiting, rec.priority * PRIORITY_STEP + rec.seq, id)
end

-- To the back of `waiting` (the front for LIFO jobs). The caller saves the record.
local function to_waiting(Q, id, rec)
  rec.seq = next_seq(Q, rec.lifo)
  enqueue(Q, id, rec)
end

-- HMGET in slices: unpack() cannot spread thousands of arguments.
local function hmget_many(key, fields)
  local values = {}
  for first = 1, #fields, 1000 do
    local slice = redis.call('HMGET', key, unpack(fields, first, math.min(#fields, first + 999)))
    for i = 1, #slice do
      values[first + i - 1] = slice[i]
    end
  end
  return values
end

-- Run `command key member...` over many members (or score/member or field/value pairs),
-- in slices that keep pairs together.
local function batch(command, key, members)
  for first = 1, #members, 1000 do
    redis.call(command, key, unpack(members, first, math.min(#members, first + 999)))
  end
end

-- Delete a job with its data, logs and tag entries.
local function delete_job(Q, id, rec)
  local key = Q[rec.state]
  assert(key, 'no key for state ' .. tostring(rec.state))
  redis.call('ZREM', key, id)
  redis.call('HDEL', Q.jobs, id)
  redis.call('HDEL', Q.data, id)
  redis.call('HDEL', Q.logs, id)
  if rec.tags then
    for _, tag in ipairs(rec.tags) do
      redis.call('ZREM', Q.tags, tag .. '\0' .. id)
    end
  end
end

-- Delete many jobs of one state at once (retention, clean, drain). Only records that
-- have tags are decoded: cjson writes the key as `"tags":[`, which no escaped string
-- inside a record can contain.
local function delete_many(Q, state, ids)
  if #ids == 0 then
    return
  end
  local stored = hmget_many(Q.jobs, ids)
  local tagged = {}
  for i, id in ipairs(ids) do
    if stored[i] and string.find(stored[i], '"tags":[', 1, true) then
      for _, tag in ipairs(cjson.decode(stored[i]).tags) do
        tagged[#tagged + 1] = tag .. '\0' .. id
      end
    end
  end
  batch('ZREM', Q[state], ids)
  batch('HDEL', Q.jobs, ids)
  batch('HDEL', Q.data, ids)
  batch('HDEL', Q.logs, ids)
  batch('ZREM', Q.tags, tagged)
end

-- Move an active job to `completed` or `failed` at `now`; note it for retention.
local function finish(Q, id, rec, state, now, finished)
  rec.state = state
  rec.finished_at = now
  rec.lock_token = nil
  rec.lock_until = nil
  redis.call('ZREM', Q.active, id)
  local tick = redis.call('HINCRBY', Q.meta, 'fseq', 1) % FINISH_TICKS
  redis.call('ZADD', Q[state], now + tick / FINISH_TICKS, id)
  save_job(Q, id, rec)
  finished[#finished + 1] = {id, rec, state}
end

local function trim(Q, state, count, age, now)
  if count and count > 0 then
    delete_many(Q, state, redis.call('ZREVRANGE', Q[state], count, -1))
  end
  if age then
    local cutoff = string.format('(%d', now - age)
    delete_many(Q, state, redis.call('ZRANGEBYSCORE', Q[state], '-inf', cutoff))
  end
end

-- Retention of the jobs finished in this call, as the SQLite store applies it: jobs whose
-- rule keeps 0 go at once; then each distinct other rule trims its whole state once.
local function apply_retention(Q, finished, now)
  local rules, seen = {}, {}
  for _, item in ipairs(finished) do
    local id, rec, state = item[1], item[2], item[3]
    local keep = rec.keep or {}
    local prefix = state == 'completed' and 'c' or 'f'
    local count, age = keep[prefix .. 'c'], keep[prefix .. 'a']
    if count == 0 then
      delete_job(Q, id, rec)
    elseif count ~= nil or age ~= nil then
      local rule = state .. '|' .. tostring(count) .. '|' .. tostring(age)
      if not seen[rule] then
        seen[rule] = true
        rules[#rules + 1] = {state, count, age}
      end
    end
  end
  table.sort(rules, function(a, b) return a[1] < b[1] end)
  for _, rule in ipairs(rules) do
    trim(Q, rule[1], rule[2], rule[3], now)
  end
end

-- Write a new job (`job` as add.lua's ARGV describes it; `order` counts adds, for ties).
-- Returns the encoded record.
local function insert_job(Q, job, order, now)
  local id = job.id
  local run_at = opt(job.run_at)
  local delay = opt(job.delay)
  if delay and delay > 0 then
    run_at = now + delay
  end
  local rec = {name = job.name, options = job.options, priority = job.priority, n = order,
    attempts_made = 0, stalled_count = 0, created_at = now, run_at = run_at,
    group = opt(job.group), keep = opt(job.keep)}
  if job.lifo then
    rec.lifo = true
  end
  local tags = opt(job.tags)
  if tags and #tags > 0 then
    rec.tags = tags
    for _, tag in ipairs(tags) do
      redis.call('ZADD', Q.tags, 0, tag .. '\0' .. id)
    end
  end
  if run_at and run_at > now then
    rec.state = 'delayed'
    redis.call('ZADD', Q.delayed, run_at, id)
  else
    to_waiting(Q, id, rec)
  end
  redis.call('HSET', Q.data, id, job.data)
  return save_job(Q, id, rec)
end

-- Forget a finished job's attempts before it runs again.
local function reset_for_retry(rec)
  rec.attempts_made = 0
  rec.stalled_count = 0
  rec.failed_reason = nil
  rec.stacktrace = nil
  rec.return_value = nil
  rec.progress = nil
  rec.finished_at = nil
  rec.processed_at = nil
  rec.lock_token = nil
  rec.lock_until = nil
  rec.worker_id = nil
end

-- Wake one idle worker blocked on the marker.
local function wake(Q)
  redis.call('ZADD', Q.marker, 0, '1')
end
