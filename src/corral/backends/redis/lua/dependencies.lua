--[[
  dependencies: a parent's records of its children, in the order they were added (see
  `_flows.lua`).

  Input:
    KEYS[1]  jobs  job id -> record (hash)
    KEYS[2]  deps  "<parent id>\0<n>" -> a parent's n-th child (hash)

    ARGV[1]  id  the job

  Output:
    {1, child record...} (cjson {q, id, s, rv, fr}), or an empty reply when the job is
    gone.
]]
--- @include "_lib"

local Q = {jobs = KEYS[1], deps = KEYS[2]}

local rec = load_job(Q, ARGV[1])
if not rec then
  return {}
end
local reply = {1}
if rec.kids then
  for _, raw in ipairs(hmget_many(Q.deps, child_fields(ARGV[1], rec.kids, {}))) do
    if raw then
      reply[#reply + 1] = raw
    end
  end
end
return reply
