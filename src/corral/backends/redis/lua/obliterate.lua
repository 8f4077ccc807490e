--[[
  obliterate: delete the queue and everything in it: jobs, schedules, workers, group
  turns, rate-limit windows, dedupe keys, events and metrics.

  Input:
    KEYS[1]   meta              (hash)
    KEYS[2]   jobs              (hash)
    KEYS[3]   data              (hash)
    KEYS[4]   waiting           (sorted set)
    KEYS[5]   delayed           (sorted set)
    KEYS[6]   active            (sorted set)
    KEYS[7]   completed         (sorted set)
    KEYS[8]   failed            (sorted set)
    KEYS[9]   waiting-children  (sorted set)
    KEYS[10]  tags              (sorted set)
    KEYS[11]  logs              (hash)
    KEYS[12]  marker            (sorted set)
    KEYS[13]  schedules         (hash)
    KEYS[14]  ticks             (sorted set)
    KEYS[15]  workers           (hash)
    KEYS[16]  worker_expiry     (sorted set)
    KEYS[17]  gwaiting          (sorted set)
    KEYS[18]  groups            (sorted set)
    KEYS[19]  gactive           (hash)
    KEYS[20]  starts            (sorted set)
    KEYS[21]  gstarts           (sorted set)
    KEYS[22]  dedupe            (hash)
    KEYS[23]  events            (stream)
    KEYS[24]  metrics           (hash)
    KEYS[25]  metric_minutes    (sorted set)
    KEYS[26]  deps              (hash)

    ARGV[1]  force  "1" to delete even while jobs are active

  Output:
    0 deleted; otherwise the number of active jobs that prevented it (nothing deleted).
]]

local active = redis.call('ZCARD', KEYS[6])
if active > 0 and ARGV[1] ~= '1' then
  return active
end
-- UNLINK: Redis frees a big queue's memory in the background instead of stalling every
-- client for seconds (a million jobs took 6 s with DEL).
redis.call('UNLINK', unpack(KEYS))
return 0
