--[[
  retry_failed: move failed jobs, oldest first, back to waiting with attempts afresh.

  Input:
    KEYS[1]  meta      queue counters (hash)
    KEYS[2]  jobs      job id -> record (hash)
    KEYS[3]  waiting   (sorted set)
    KEYS[4]  active    (sorted set; read to restart positions)
    KEYS[5]  failed    (sorted set)
    KEYS[6]  marker    wakes idle workers (sorted set)
    KEYS[7]  gwaiting  waiting jobs by group, in claim order (sorted set)
    KEYS[8]  groups    groups with waiting jobs, in turn order (sorted set)
    KEYS[9]  events    the event stream (see `_events.lua`)

    ARGV[1]  now_ms  epoch ms, or "" for the server's TIME (the events' time)
    ARGV[2]  limit   how many at most; "" for all

  Output:
    The number of jobs moved.

  Wakes: the marker, when a job moved.

  Events: waiting per job (level "all").
]]
--- @include "_lib"
--- @include "_events"

local Q = {meta = KEYS[1], jobs = KEYS[2], waiting = KEYS[3], active = KEYS[4],
  failed = KEYS[5], marker = KEYS[6], gwaiting = KEYS[7], groups = KEYS[8],
  events = KEYS[9]}

local limit = tonumber(ARGV[2]) or -1
if limit == 0 then
  return 0
end
local ids = redis.call('ZRANGE', Q.failed, 0, limit > 0 and limit - 1 or -1)
local E, moved = recorder(Q, nil), {}
for _, id in ipairs(ids) do
  local rec = load_job(Q, id)
  redis.call('ZREM', Q.failed, id)
  if rec then
    reset_for_retry(rec)
    to_waiting(Q, id, rec)
    save_job(Q, id, rec)
    moved[#moved + 1] = id
  end
end
if E.all and #moved > 0 then
  E.now = resolve_now(ARGV[1])
  job_events(E, 'waiting', moved, true)
end
if #ids > 0 then
  wake(Q)
end
return #ids
