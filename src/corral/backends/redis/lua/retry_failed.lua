--[[
  retry_failed: move failed jobs, oldest first, back to waiting with attempts afresh.

  Input:
    KEYS[1]  meta     queue counters (hash)
    KEYS[2]  jobs     job id -> record (hash)
    KEYS[3]  waiting  (sorted set)
    KEYS[4]  active   (sorted set; read to restart positions)
    KEYS[5]  failed   (sorted set)
    KEYS[6]  marker   wakes idle workers (sorted set)

    ARGV[1]  limit  how many at most; "" for all

  Output:
    The number of jobs moved.

  Wakes: the marker, when a job moved.
]]
--- @include "_lib"

local Q = {meta = KEYS[1], jobs = KEYS[2], waiting = KEYS[3], active = KEYS[4],
  failed = KEYS[5], marker = KEYS[6]}

local limit = tonumber(ARGV[1]) or -1
if limit == 0 then
  return 0
end
local ids = redis.call('ZRANGE', Q.failed, 0, limit > 0 and limit - 1 or -1)
for _, id in ipairs(ids) do
  local rec = load_job(Q, id)
  redis.call('ZREM', Q.failed, id)
  if rec then
    reset_for_retry(rec)
    to_waiting(Q, id, rec)
    save_job(Q, id, rec)
  end
end
if #ids > 0 then
  wake(Q)
end
return #ids
