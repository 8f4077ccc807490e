--[[
  promote: move a delayed job to the back of waiting now.

  Input:
    KEYS[1]  meta      queue counters (hash)
    KEYS[2]  jobs      job id -> record (hash)
    KEYS[3]  waiting   (sorted set)
    KEYS[4]  active    (sorted set; read to restart positions)
    KEYS[5]  delayed   (sorted set)
    KEYS[6]  marker    wakes idle workers (sorted set)
    KEYS[7]  gwaiting  waiting jobs by group, in claim order (sorted set)
    KEYS[8]  groups    groups with waiting jobs, in turn order (sorted set)
    KEYS[9]  events    the event stream (see `_events.lua`)

    ARGV[1]  now_ms  epoch ms, or "" for the server's TIME
    ARGV[2]  id      the job

  Output:
    1 promoted, 0 the job is not delayed.

  Wakes: the marker.

  Events: waiting (level "all").
]]
--- @include "_lib"
--- @include "_events"

local Q = {meta = KEYS[1], jobs = KEYS[2], waiting = KEYS[3], active = KEYS[4],
  delayed = KEYS[5], marker = KEYS[6], gwaiting = KEYS[7], groups = KEYS[8],
  events = KEYS[9]}

local id = ARGV[2]
local rec = load_job(Q, id)
if not rec or rec.state ~= 'delayed' then
  return 0
end
rec.run_at = resolve_now(ARGV[1])
redis.call('ZREM', Q.delayed, id)
to_waiting(Q, id, rec)
save_job(Q, id, rec)
detail_event(recorder(Q, rec.run_at), 'waiting', id)
wake(Q)
return 1
