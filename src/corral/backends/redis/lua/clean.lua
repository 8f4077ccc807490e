--[[
  clean: delete jobs of one state older than a grace period, oldest first. Finished jobs
  age from when they finished, the others from when they were added.

  Input:
    KEYS[1]   jobs              job id -> record (hash)
    KEYS[2]   data              (hash)
    KEYS[3]   waiting           (sorted set)
    KEYS[4]   delayed           (sorted set)
    KEYS[5]   completed         (sorted set)
    KEYS[6]   failed            (sorted set)
    KEYS[7]   waiting-children  (sorted set)
    KEYS[8]   tags              (sorted set)
    KEYS[9]   logs              (hash)
    KEYS[10]  gwaiting          waiting jobs by group, in claim order (sorted set)
    KEYS[11]  groups            groups with waiting jobs, in turn order (sorted set)
    KEYS[12]  meta              queue settings (hash; read for the event level)
    KEYS[13]  events            the event stream (see `_events.lua`)
    KEYS[14]  deps              a parent's child records (hash)

    ARGV[1]  now_ms    epoch ms, or "" for the server's TIME
    ARGV[2]  state     waiting | delayed | completed | failed | waiting-children
    ARGV[3]  grace_ms  jobs at most this old stay
    ARGV[4]  limit     how many at most; 0 or less for all

  Output:
    JSON array of the ids removed.

  Events: removed per job.

  Flows: as remove.lua.
]]
--- @include "_lib"
--- @include "_events"
--- @include "_flows"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  completed = KEYS[5], failed = KEYS[6], ['waiting-children'] = KEYS[7], tags = KEYS[8],
  logs = KEYS[9], gwaiting = KEYS[10], groups = KEYS[11], meta = KEYS[12],
  events = KEYS[13], deps = KEYS[14]}

local state = ARGV[2]
local now = resolve_now(ARGV[1])
local cutoff = now - tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local ids = {}

if state == 'completed' or state == 'failed' then
  -- finished_at <= cutoff, whatever the tie-breaking fraction of the score
  local upper = string.format('(%d', cutoff + 1)
  if limit > 0 then
    ids = redis.call('ZRANGEBYSCORE', Q[state], '-inf', upper, 'LIMIT', 0, limit)
  else
    ids = redis.call('ZRANGEBYSCORE', Q[state], '-inf', upper)
  end
else
  -- Not ordered by age: read every record of the state.
  local old = {}
  for _, id in ipairs(redis.call('ZRANGE', Q[state], 0, -1)) do
    local rec = load_job(Q, id)
    if rec and rec.created_at <= cutoff then
      old[#old + 1] = {id = id, at = rec.created_at, n = rec.n}
    end
  end
  table.sort(old, function(a, b)
    if a.at ~= b.at then return a.at < b.at end
    return a.n < b.n
  end)
  for i = 1, #old do
    if limit > 0 and i > limit then
      break
    end
    ids[i] = old[i].id
  end
end
job_events(recorder(Q, now), 'removed', ids)
delete_many(Q, state, ids)
return cjson.encode(ids)
