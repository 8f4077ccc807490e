--[[
  recover_stalled: hand back active jobs whose lock lapsed; fail those stalled too often.

  Input:
    KEYS[1]  meta     queue counters (hash)
    KEYS[2]  jobs     job id -> record (hash)
    KEYS[3]  data     (hash; retention deletes entries)
    KEYS[4]  waiting  (sorted set)
    KEYS[5]  active   by lock_until (sorted set)
    KEYS[6]  failed   (sorted set)
    KEYS[7]  tags     (sorted set; retention deletes entries)
    KEYS[8]  logs     (hash; retention deletes entries)
    KEYS[9]  marker   wakes idle workers (sorted set)

    ARGV[1]  now_ms             epoch ms, or "" for the server's TIME
    ARGV[2]  max_stalled_count  stalls allowed before the job fails
    ARGV[3]  reason             the failed_reason of jobs stalled too often

  Output:
    JSON {recovered: [id...], failed: [id...]}, in lock expiry order; at most 5000 jobs a
    call (the next check takes the rest).

  Wakes: the marker, when a job went back to waiting.
]]
--- @include "_lib"

local Q = {meta = KEYS[1], jobs = KEYS[2], data = KEYS[3], waiting = KEYS[4],
  active = KEYS[5], failed = KEYS[6], tags = KEYS[7], logs = KEYS[8], marker = KEYS[9]}

local now = resolve_now(ARGV[1])
local max_stalled = tonumber(ARGV[2])
local recovered, failed, finished = {}, {}, {}

local lapsed = redis.call('ZRANGEBYSCORE', Q.active, '-inf', string.format('(%d', now),
  'LIMIT', 0, 5000)
for _, id in ipairs(lapsed) do
  local rec = load_job(Q, id)
  if not rec then
    redis.call('ZREM', Q.active, id)
  else
    rec.stalled_count = rec.stalled_count + 1
    if rec.stalled_count > max_stalled then
      rec.failed_reason = ARGV[3]
      finish(Q, id, rec, 'failed', now, finished)
      failed[#failed + 1] = id
    else
      rec.lock_token = nil
      rec.lock_until = nil
      redis.call('ZREM', Q.active, id)
      enqueue(Q, id, rec)
      save_job(Q, id, rec)
      recovered[#recovered + 1] = id
    end
  end
end
apply_retention(Q, finished, now)
if #recovered > 0 then
  wake(Q)
end
return cjson.encode({recovered = recovered, failed = failed})
