--[[
  list_jobs: a page of the jobs in one state, in the order a user expects: waiting and
  delayed next to run first, active by when they started, finished ones newest first.

  Input:
    KEYS[1]  jobs              job id -> record (hash)
    KEYS[2]  data              job id -> data JSON (hash)
    KEYS[3]  waiting           (sorted set)
    KEYS[4]  delayed           (sorted set)
    KEYS[5]  active            (sorted set)
    KEYS[6]  completed         (sorted set)
    KEYS[7]  failed            (sorted set)
    KEYS[8]  waiting-children  (sorted set)

    ARGV[1]  state   one of the six states
    ARGV[2]  offset  jobs to skip
    ARGV[3]  limit   jobs to return at most

  Output:
    {id, record, data, ...}
]]
--- @include "_lib"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  active = KEYS[5], completed = KEYS[6], failed = KEYS[7], ['waiting-children'] = KEYS[8]}

local state, offset, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if limit <= 0 then
  return {}
end
local ids
if state == 'completed' or state == 'failed' then
  ids = redis.call('ZREVRANGE', Q[state], offset, offset + limit - 1)
elseif state == 'active' then
  -- Few jobs are active at once: sort them all by start, then position.
  local all = {}
  for _, id in ipairs(redis.call('ZRANGE', Q.active, 0, -1)) do
    local rec = load_job(Q, id)
    if rec then
      all[#all + 1] = {id = id, at = rec.processed_at or 0, seq = rec.seq or 0}
    end
  end
  table.sort(all, function(a, b)
    if a.at ~= b.at then return a.at < b.at end
    return a.seq < b.seq
  end)
  ids = {}
  for i = offset + 1, math.min(#all, offset + limit) do
    ids[#ids + 1] = all[i].id
  end
else
  ids = redis.call('ZRANGE', Q[state], offset, offset + limit - 1)
end
local reply = {}
if #ids == 0 then
  return reply
end
local records = hmget_many(Q.jobs, ids)
local data = hmget_many(Q.data, ids)
for i, id in ipairs(ids) do
  if records[i] then
    reply[#reply + 1] = id
    reply[#reply + 1] = records[i]
    reply[#reply + 1] = data[i]
  end
end
return reply
