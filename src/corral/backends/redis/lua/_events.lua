--[[
  The queue's event stream and its per-minute metrics, pasted after `_lib` where a script
  says `--- @include "_events"`. Not a transition: it has no KEYS or ARGV of its own.
  Events need meta and events in Q; metrics need metrics and metric_minutes.

  Events. `events` is a stream capped near EVENTS_CAP entries (XADD MAXLEN ~: Redis drops
  whole nodes of old entries, so it may hold a hundred or so more), with Redis' own ids.
  Each entry has the fields type, job (the job id), data (the payload as JSON text; absent
  when there is none) and at (the transition's time, epoch ms). The queue's level is the
  `events` field of meta (written by set_config; absent: "final"), read once per script
  call: "final" records added, completed, failed, retrying, stalled, removed, deduplicated
  and progress; "all" adds waiting, active and delayed; "off" records nothing at all.

  Metrics. `metrics` maps each minute in which jobs finished (its start, epoch ms, in
  decimal) to JSON {completed, failed, ptot, pmax, wtot, wmax}: counts, and the total and
  longest processing and wait times in ms. `metric_minutes` holds the same minutes by time,
  for range reads and so that the first write of a minute drops the minutes older than
  METRICS_KEEP_MS: a bounded hash, each write O(log n). Processing time runs from the
  attempt's start (processed_at) to its end; wait time from when the job fell due (its
  run_at, else when it was added; never before it was added) to the attempt's start.
]]

local EVENTS_CAP = 10000
local MINUTE_MS = 60000
local METRICS_KEEP_MS = 8 * 86400000

-- The events of one script call, at the queue's level. `now`: the transition's time, or
-- nil for the server's TIME (read only when something is recorded). `level`: the meta
-- field when the caller read it already (false when absent), else nil.
local function recorder(Q, now, level)
  if level == nil then
    level = redis.call('HGET', Q.meta, 'events')
  end
  level = level or 'final'
  return {Q = Q, now = now, on = level ~= 'off', all = level == 'all'}
end

local function emit(E, kind, id, data)
  if not E.now then
    E.now = resolve_now('')
  end
  if data then
    redis.call('XADD', E.Q.events, 'MAXLEN', '~', EVENTS_CAP, '*', 'type', kind, 'job', id,
      'data', data, 'at', E.now)
  else
    redis.call('XADD', E.Q.events, 'MAXLEN', '~', EVENTS_CAP, '*', 'type', kind, 'job', id,
      'at', E.now)
  end
end

-- Record an event that every level but "off" keeps. Callers that build a payload check
-- E.on first, so that a queue recording nothing pays for nothing.
local function final_event(E, kind, id, data)
  if E.on then
    emit(E, kind, id, data)
  end
end

-- Record an event that only level "all" keeps (waiting, active, delayed).
local function detail_event(E, kind, id, data)
  if E.all then
    emit(E, kind, id, data)
  end
end

-- One event of `kind` per job, without payload; of many, only the newest EVENTS_CAP (the
-- trim would drop the others at once).
local function job_events(E, kind, ids, detail)
  if (detail and E.all) or (not detail and E.on) then
    for i = math.max(1, #ids - EVENTS_CAP + 1), #ids do
      emit(E, kind, ids[i])
    end
  end
end

-- A payload {key: value} around a value that is already JSON text, unparsed.
local function embed(key, value)
  return '{"' .. key .. '":' .. value .. '}'
end

-- The jobs one call finished at `now`, to add up for the minute of `now`.
local function tally(now)
  return {now = now, completed = 0, failed = 0, ptot = 0, pmax = 0, wtot = 0, wmax = 0}
end

-- Count a job (its record) that just finished, completed or not.
local function tally_job(T, rec, completed)
  if completed then
    T.completed = T.completed + 1
  else
    T.failed = T.failed + 1
  end
  local started = rec.processed_at
  if not started then
    return
  end
  local processing = math.max(0, T.now - started)
  T.ptot = T.ptot + processing
  T.pmax = math.max(T.pmax, processing)
  local due = math.max(rec.created_at, rec.run_at or rec.created_at)
  local wait = math.max(0, started - due)
  T.wtot = T.wtot + wait
  T.wmax = math.max(T.wmax, wait)
end

-- Add the tally to its minute; a minute's first write drops the minutes too old to keep.
-- Integers are formatted here: cjson would write large ones in exponent notation.
local function write_tally(Q, T)
  if T.completed + T.failed == 0 then
    return
  end
  local minute = T.now - T.now % MINUTE_MS
  local field = string.format('%d', minute)
  local raw = redis.call('HGET', Q.metrics, field)
  local m = {completed = 0, failed = 0, ptot = 0, pmax = 0, wtot = 0, wmax = 0}
  if raw then
    m = cjson.decode(raw)
  else
    redis.call('ZADD', Q.metric_minutes, minute, field)
    local cutoff = string.format('(%d', minute - METRICS_KEEP_MS)
    local old = redis.call('ZRANGEBYSCORE', Q.metric_minutes, '-inf', cutoff)
    if #old > 0 then
      batch('HDEL', Q.metrics, old)
      redis.call('ZREMRANGEBYSCORE', Q.metric_minutes, '-inf', cutoff)
    end
  end
  redis.call('HSET', Q.metrics, field, string.format(
    '{"completed":%d,"failed":%d,"ptot":%d,"pmax":%d,"wtot":%d,"wmax":%d}',
    m.completed + T.completed, m.failed + T.failed, m.ptot + T.ptot,
    math.max(m.pmax, T.pmax), m.wtot + T.wtot, math.max(m.wmax, T.wmax)))
end
