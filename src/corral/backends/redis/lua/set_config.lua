--[[
  set_config: store the queue's settings and the limits they set, and move their version
  on. `settle` reads the limits in the same script that claims, so every worker obeys the
  latest ones from its next claim.

  What the limits need is kept only while they are set: job starts while a rate limit is
  (the group window's index from the queue's starts when a group rate limit is set
  anew), active jobs per group while a group concurrency is (recounted here from the
  active jobs, so the count is right whatever happened before).

  Input:
    KEYS[1]  meta     queue settings (hash): config, config_version, the limits
    KEYS[2]  jobs     job id -> record (hash; read to count active jobs per group)
    KEYS[3]  active   (sorted set; read)
    KEYS[4]  gactive  group -> active jobs (hash)
    KEYS[5]  starts   job starts by time (sorted set)
    KEYS[6]  gstarts  job starts by group, then time (sorted set)

    ARGV[1]  config             JSON text
    ARGV[2]  rate_limit         at most this many job starts ... ("" for no limit)
    ARGV[3]  rate_per_ms        ... in any window of this many ms ("")
    ARGV[4]  concurrency        at most this many active jobs ("")
    ARGV[5]  group_rate_limit   the same per group ("")
    ARGV[6]  group_rate_per_ms  ("")
    ARGV[7]  group_concurrency  ("")
    ARGV[8]  events             the event level: all, final or off (see `_events.lua`)

  Output:
    The new version.
]]
--- @include "_lib"

local Q = {meta = KEYS[1], jobs = KEYS[2], active = KEYS[3], gactive = KEYS[4],
  starts = KEYS[5], gstarts = KEYS[6]}

local LIMITS = {'rate_limit', 'rate_per_ms', 'concurrency', 'group_rate_limit',
  'group_rate_per_ms', 'group_concurrency'}

local function rated(limit, per)
  return limit ~= nil and per ~= nil and per > 0
end

local before = redis.call('HMGET', Q.meta, 'group_rate_limit', 'group_rate_per_ms')
local had_group_rate = rated(tonumber(before[1]), tonumber(before[2]))
local limits = {}
for i, field in ipairs(LIMITS) do
  limits[field] = tonumber(ARGV[i + 1])
  if limits[field] then
    redis.call('HSET', Q.meta, field, limits[field])
  else
    redis.call('HDEL', Q.meta, field)
  end
end

local group_rate = rated(limits.group_rate_limit, limits.group_rate_per_ms)
if not rated(limits.rate_limit, limits.rate_per_ms) and not group_rate then
  redis.call('DEL', Q.starts, Q.gstarts)
elseif not group_rate then
  redis.call('DEL', Q.gstarts)
elseif not had_group_rate then
  -- Both sets hold the same members: the group windows start from the queue's starts.
  local entries = {}
  for _, member in ipairs(redis.call('ZRANGE', Q.starts, 0, -1)) do
    entries[#entries + 1] = 0
    entries[#entries + 1] = member
  end
  batch('ZADD', Q.gstarts, entries)
end

redis.call('DEL', Q.gactive)
if limits.group_concurrency then
  local ids = redis.call('ZRANGE', Q.active, 0, -1)
  local counts = {}
  for _, raw in ipairs(hmget_many(Q.jobs, ids)) do
    if raw then
      local group = group_of(decode_job(raw))
      counts[group] = (counts[group] or 0) + 1
    end
  end
  for group, count in pairs(counts) do
    redis.call('HSET', Q.gactive, group, count)
  end
end

redis.call('HSET', Q.meta, 'config', ARGV[1], 'events', ARGV[8])
return redis.call('HINCRBY', Q.meta, 'config_version', 1)
