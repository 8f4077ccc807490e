--[[
  retry_job: move a completed or failed job back to waiting with its attempts afresh.

  Input:
    KEYS[1]   meta       queue counters (hash)
    KEYS[2]   jobs       job id -> record (hash)
    KEYS[3]   waiting    (sorted set)
    KEYS[4]   active     (sorted set; read to restart positions)
    KEYS[5]   completed  (sorted set)
    KEYS[6]   failed     (sorted set)
    KEYS[7]   marker     wakes idle workers (sorted set)
    KEYS[8]   gwaiting   waiting jobs by group, in claim order (sorted set)
    KEYS[9]   groups     groups with waiting jobs, in turn order (sorted set)
    KEYS[10]  events     the event stream (see `_events.lua`)

    ARGV[1]  now_ms  epoch ms, or "" for the server's TIME (the event's time)
    ARGV[2]  id      the job

  Output:
    1 moved, 0 the job is neither completed nor failed.

  Wakes: the marker.

  Events: waiting (level "all").
]]
--- @include "_lib"
--- @include "_events"

local Q = {meta = KEYS[1], jobs = KEYS[2], waiting = KEYS[3], active = KEYS[4],
  completed = KEYS[5], failed = KEYS[6], marker = KEYS[7], gwaiting = KEYS[8],
  groups = KEYS[9], events = KEYS[10]}

local id = ARGV[2]
local rec = load_job(Q, id)
if not rec or (rec.state ~= 'completed' and rec.state ~= 'failed') then
  return 0
end
redis.call('ZREM', Q[rec.state], id)
reset_for_retry(rec)
to_waiting(Q, id, rec)
save_job(Q, id, rec)
local E = recorder(Q, nil)
if E.all then
  E.now = resolve_now(ARGV[1])
  detail_event(E, 'waiting', id)
end
wake(Q)
return 1
