--[[
  upsert_schedule: store a schedule. An identical spec changes nothing; a changed spec
  replaces the planned tick and bumps the version, keeping count and last run.

  Input:
    KEYS[1]  schedules  schedule id -> record (hash)
    KEYS[2]  ticks      schedule id by next run (sorted set)

    ARGV[1]  id        the schedule
    ARGV[2]  spec      canonical JSON text
    ARGV[3]  next_run  epoch ms of the first tick, or "" for none

  Output:
    1 stored, 0 unchanged.
]]

local id, spec, next_run = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('HGET', KEYS[1], id)
local schedule
if raw then
  schedule = cjson.decode(raw)
  if schedule.spec == spec then
    return 0
  end
  schedule.version = schedule.version + 1
else
  schedule = {count = 0, version = 1}
end
schedule.spec = spec
schedule.next_run = next_run
redis.call('HSET', KEYS[1], id, cjson.encode(schedule))
if next_run then
  redis.call('ZADD', KEYS[2], next_run, id)
else
  redis.call('ZREM', KEYS[2], id)
end
return 1
