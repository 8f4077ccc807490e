--[[
  Helpers of the worker registry, pasted by the loader where a script says
  `--- @include "_workers"`. Not a transition: it has no KEYS or ARGV of its own.

  A worker is one cjson record {info, started_at, heartbeat_at} in the queue's `workers`
  hash (info is the worker's JSON text, kept as a string), and its expiry time in the
  `worker_expiry` sorted set. It is live while now < expires_at; an expired worker is
  deleted from both by the next script of the registry that looks.
]]

-- Delete the registrations that expired at or before `now`.
local function drop_expired_workers(Q, now)
  local expired = redis.call('ZRANGEBYSCORE', Q.worker_expiry, '-inf', now)
  for first = 1, #expired, 1000 do -- unpack() cannot spread thousands of arguments
    redis.call('HDEL', Q.workers, unpack(expired, first, math.min(first + 999, #expired)))
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', Q.worker_expiry, '-inf', now)
  end
end
