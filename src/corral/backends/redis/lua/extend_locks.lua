--[[
  extend_locks: extend the locks of jobs still held with the given tokens.

  Input:
    KEYS[1]  jobs    job id -> record (hash)
    KEYS[2]  active  by lock_until (sorted set)

    ARGV[1]  now_ms   epoch ms, or "" for the server's TIME
    ARGV[2]  lock_ms  the new lock lasts this long from now
    ARGV[3]  held     JSON array of [id, token]

  Output:
    JSON array of the ids no longer held with that token (their locks are lost), in order.
]]
--- @include "_lib"

local Q = {jobs = KEYS[1], active = KEYS[2]}

local until_ms = resolve_now(ARGV[1]) + tonumber(ARGV[2])
local lost = {}
for _, pair in ipairs(cjson.decode(ARGV[3])) do
  local id, token = pair[1], pair[2]
  local rec = load_job(Q, id)
  if rec and rec.state == 'active' and rec.lock_token == token then
    rec.lock_until = until_ms
    save_job(Q, id, rec)
    redis.call('ZADD', Q.active, until_ms, id)
  else
    lost[#lost + 1] = id
  end
end
return cjson.encode(lost)
