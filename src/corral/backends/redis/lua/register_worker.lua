--[[
  register_worker: register a worker, or renew its heartbeat keeping its start time. It
  counts as live for ttl_ms. Expired registrations of the queue are deleted first, so a
  worker whose registration lapsed registers afresh.

  Input:
    KEYS[1]  workers        worker id -> record {info, started_at, heartbeat_at} (hash)
    KEYS[2]  worker_expiry  worker id by expires_at ms (sorted set)

    ARGV[1]  now_ms  epoch ms, or "" for the server's TIME
    ARGV[2]  id      the worker
    ARGV[3]  info    the worker's JSON text (host, pid, ...)
    ARGV[4]  ttl_ms  how long the registration lasts without a renewal

  Output:
    The time used (epoch ms).
]]

--- @include "_lib"
--- @include "_workers"

local Q = {workers = KEYS[1], worker_expiry = KEYS[2]}
local now = resolve_now(ARGV[1])
local id, info, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])

drop_expired_workers(Q, now)
local started = now
local raw = redis.call('HGET', Q.workers, id)
if raw then
  started = cjson.decode(raw).started_at
end
redis.call('HSET', Q.workers, id,
  cjson.encode({info = info, started_at = started, heartbeat_at = now}))
redis.call('ZADD', Q.worker_expiry, now + ttl, id)
return now
