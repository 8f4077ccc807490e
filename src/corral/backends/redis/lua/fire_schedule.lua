--[[
  fire_schedule: fire one tick as a compare-and-set. While the schedule is still at the
  caller's version with its next run at `due_ms`, advance it and add the tick's job (as
  add.lua does: an id still stored is kept unchanged, a dedupe rule applies); otherwise
  change nothing.

  Input:
    KEYS[1]   meta       queue counters (hash)
    KEYS[2]   jobs       job id -> record (hash)
    KEYS[3]   data       job id -> data JSON (hash)
    KEYS[4]   waiting    (sorted set)
    KEYS[5]   active     (sorted set; read to restart positions)
    KEYS[6]   delayed    (sorted set)
    KEYS[7]   tags       (sorted set)
    KEYS[8]   marker     wakes idle workers (sorted set)
    KEYS[9]   schedules  schedule id -> record (hash)
    KEYS[10]  ticks      schedule id by next run (sorted set)
    KEYS[11]  gwaiting   waiting jobs by group, in claim order (sorted set)
    KEYS[12]  groups     groups with waiting jobs, in turn order (sorted set)
    KEYS[13]  dedupe     dedupe key -> JSON {id, exp} (hash)
    KEYS[14]  events     the event stream (see `_events.lua`)

    ARGV[1]  now_ms       epoch ms, or "" for the server's TIME
    ARGV[2]  id           the schedule
    ARGV[3]  version      the schedule version the tick was computed from
    ARGV[4]  due_ms       the next run the tick was computed from
    ARGV[5]  next_run_ms  the run after this one, or "" when the schedule ends
    ARGV[6]  job          JSON object, as one job of add.lua's ARGV[3]

  Output:
    1 fired, 0 the schedule moved on or changed (nothing written).

  Wakes: the marker, when the job was written.

  Events: those of adding the job (see `_dedupe.lua`).
]]
--- @include "_lib"
--- @include "_events"
--- @include "_dedupe"

local Q = {meta = KEYS[1], jobs = KEYS[2], data = KEYS[3], waiting = KEYS[4],
  active = KEYS[5], delayed = KEYS[6], tags = KEYS[7], marker = KEYS[8],
  schedules = KEYS[9], ticks = KEYS[10], gwaiting = KEYS[11], groups = KEYS[12],
  dedupe = KEYS[13], events = KEYS[14]}

local id, due = ARGV[2], tonumber(ARGV[4])
local raw = redis.call('HGET', Q.schedules, id)
if not raw then
  return 0
end
local schedule = cjson.decode(raw)
if schedule.version ~= tonumber(ARGV[3]) or schedule.next_run ~= due then
  return 0
end
schedule.next_run = tonumber(ARGV[5])
schedule.last_run = due
schedule.count = schedule.count + 1
redis.call('HSET', Q.schedules, id, cjson.encode(schedule))
if schedule.next_run then
  redis.call('ZADD', Q.ticks, schedule.next_run, id)
else
  redis.call('ZREM', Q.ticks, id)
end

local job = cjson.decode(ARGV[6])
if redis.call('HEXISTS', Q.jobs, job.id) == 0 then
  local now = resolve_now(ARGV[1])
  local _, _, _, _, wrote = add_job(Q, job, redis.call('HINCRBY', Q.meta, 'n', 1), now,
    recorder(Q, now))
  if wrote then
    wake(Q)
  end
end
return 1
