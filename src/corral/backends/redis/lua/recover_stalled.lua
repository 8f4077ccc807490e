--[[
  recover_stalled: hand back active jobs whose lock lapsed; fail those stalled too often.

  Input:
    KEYS[1]   meta      queue counters (hash)
    KEYS[2]   jobs      job id -> record (hash)
    KEYS[3]   data      (hash; retention deletes entries)
    KEYS[4]   waiting   (sorted set)
    KEYS[5]   active    by lock_until (sorted set)
    KEYS[6]   failed    (sorted set)
    KEYS[7]   tags      (sorted set; retention deletes entries)
    KEYS[8]   logs      (hash; retention deletes entries)
    KEYS[9]   marker    wakes idle workers (sorted set)
    KEYS[10]  gwaiting  waiting jobs by group, in claim order (sorted set)
    KEYS[11]  groups    groups with waiting jobs, in turn order (sorted set)
    KEYS[12]  gactive   group -> active jobs (hash; while group_concurrency is set)
    KEYS[13]  events          the event stream (see `_events.lua`)
    KEYS[14]  metrics         minute -> what finished in it (hash)
    KEYS[15]  metric_minutes  the minutes of `metrics` by time (sorted set)
    KEYS[16]  deps            a parent's child records (hash; retention deletes entries)

    ARGV[1]  now_ms             epoch ms, or "" for the server's TIME
    ARGV[2]  max_stalled_count  stalls allowed before the job fails
    ARGV[3]  reason             the failed_reason of jobs stalled too often

  Output:
    JSON {recovered: [id...], failed: [id...]}, in lock expiry order; at most 5000 jobs a
    call (the next check takes the rest).

  Wakes: the marker, when a job went back to waiting.

  Events (at the queue's level): per job, stalled {stalled_count}, then failed {reason,
  attempts_made} or waiting. The jobs failed count in the minute's metrics.

  Flows: a child failed updates its parent, which may fail in turn (see `_flows.lua`).
]]
--- @include "_lib"
--- @include "_events"
--- @include "_flows"

local Q = {meta = KEYS[1], jobs = KEYS[2], data = KEYS[3], waiting = KEYS[4],
  active = KEYS[5], failed = KEYS[6], tags = KEYS[7], logs = KEYS[8], marker = KEYS[9],
  gwaiting = KEYS[10], groups = KEYS[11], gactive = KEYS[12], events = KEYS[13],
  metrics = KEYS[14], metric_minutes = KEYS[15], deps = KEYS[16]}

local now = resolve_now(ARGV[1])
local max_stalled = tonumber(ARGV[2])
local recovered, failed, finished = {}, {}, {}
count_groups = redis.call('HEXISTS', Q.meta, 'group_concurrency') == 1
local E = recorder(Q, now)
local done = tally(now)

local lapsed = redis.call('ZRANGEBYSCORE', Q.active, '-inf', string.format('(%d', now),
  'LIMIT', 0, 5000)
for _, id in ipairs(lapsed) do
  local rec = load_job(Q, id)
  if not rec then
    redis.call('ZREM', Q.active, id)
  else
    count_active(Q, group_of(rec), -1)
    rec.stalled_count = rec.stalled_count + 1
    if E.on then
      final_event(E, 'stalled', id, cjson.encode({stalled_count = rec.stalled_count}))
    end
    if rec.stalled_count > max_stalled then
      rec.failed_reason = ARGV[3]
      finish(Q, id, rec, 'failed', now, finished)
      failed[#failed + 1] = id
      tally_job(done, rec, false)
      if E.on then
        final_event(E, 'failed', id,
          cjson.encode({reason = ARGV[3], attempts_made = rec.attempts_made}))
      end
      if rec.parent then
        child_ended(id, rec, 'failed', ARGV[3], now)
      end
    else
      rec.lock_token = nil
      rec.lock_until = nil
      redis.call('ZREM', Q.active, id)
      enqueue(Q, id, rec)
      save_job(Q, id, rec)
      recovered[#recovered + 1] = id
      detail_event(E, 'waiting', id)
    end
  end
end
write_tally(Q, done)
apply_retention(Q, finished, now)
if #recovered > 0 then
  wake(Q)
end
return cjson.encode({recovered = recovered, failed = failed})
