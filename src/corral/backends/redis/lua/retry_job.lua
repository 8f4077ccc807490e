--[[
  retry_job: move a completed or failed job back to waiting with its attempts afresh.

  Input:
    KEYS[1]  meta       queue counters (hash)
    KEYS[2]  jobs       job id -> record (hash)
    KEYS[3]  waiting    (sorted set)
    KEYS[4]  active     (sorted set; read to restart positions)
    KEYS[5]  completed  (sorted set)
    KEYS[6]  failed     (sorted set)
    KEYS[7]  marker     wakes idle workers (sorted set)

    ARGV[1]  id  the job

  Output:
    1 moved, 0 the job is neither completed nor failed.

  Wakes: the marker.
]]
--- @include "_lib"

local Q = {meta = KEYS[1], jobs = KEYS[2], waiting = KEYS[3], active = KEYS[4],
  completed = KEYS[5], failed = KEYS[6], marker = KEYS[7]}

local id = ARGV[1]
local rec = load_job(Q, id)
if not rec or (rec.state ~= 'completed' and rec.state ~= 'failed') then
  return 0
end
redis.call('ZREM', Q[rec.state], id)
reset_for_retry(rec)
to_waiting(Q, id, rec)
save_job(Q, id, rec)
wake(Q)
return 1
