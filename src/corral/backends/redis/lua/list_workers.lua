--[[
  list_workers: the live workers of the queue, by id; expired registrations are deleted.

  Input:
    KEYS[1]  workers        worker id -> record {info, started_at, heartbeat_at} (hash)
    KEYS[2]  worker_expiry  worker id by expires_at ms (sorted set)

    ARGV[1]  now_ms  epoch ms, or "" for the server's TIME

  Output:
    A flat array: worker id, record (cjson), worker id, record, ... in id order.
]]

--- @include "_lib"
--- @include "_workers"

local Q = {workers = KEYS[1], worker_expiry = KEYS[2]}
drop_expired_workers(Q, resolve_now(ARGV[1]))

local ids = redis.call('ZRANGE', Q.worker_expiry, 0, -1)
table.sort(ids)
local reply = {}
if #ids > 0 then
  local records = hmget_many(Q.workers, ids)
  for i, id in ipairs(ids) do
    if records[i] then
      reply[#reply + 1] = id
      reply[#reply + 1] = records[i]
    end
  end
end
return reply
