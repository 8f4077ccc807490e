--[[
  add: write a batch of new jobs, unless the caller's settings are stale.

  Input:
    KEYS[1]  meta      queue flags and counters (hash)
    KEYS[2]  jobs      job id -> record (hash)
    KEYS[3]  data      job id -> data JSON (hash)
    KEYS[4]  waiting   (sorted set)
    KEYS[5]  active    (sorted set; read to restart positions)
    KEYS[6]  delayed   (sorted set)
    KEYS[7]  tags      "<tag>\0<id>" at score 0 (sorted set)
    KEYS[8]  marker    wakes idle workers (sorted set)

    ARGV[1]  config_version  the settings version the caller validated against
    ARGV[2]  now_ms          epoch ms, or "" for the server's TIME
    ARGV[3]  jobs            JSON array of {id, name, data, options, priority, lifo, delay,
                             run_at, tags, group, keep: {cc, ca, fc, fa}}

  Output:
    {summary, created, id, record, data, ...}: summary is JSON {now, stale}; then per job
    in input order 1 (written) or 0 (an id still stored: that job, unchanged).
    Stale settings: {summary} alone, nothing written.

  Wakes: the marker, when a job was written.
]]
--- @include "_lib"

local Q = {meta = KEYS[1], jobs = KEYS[2], data = KEYS[3], waiting = KEYS[4],
  active = KEYS[5], delayed = KEYS[6], tags = KEYS[7], marker = KEYS[8]}

local now = resolve_now(ARGV[2])
local version = tonumber(redis.call('HGET', Q.meta, 'config_version')) or 0
if version ~= tonumber(ARGV[1]) then
  return {cjson.encode({now = now, stale = true})}
end

local jobs = cjson.decode(ARGV[3])
local reply = {cjson.encode({now = now})}
local order = redis.call('HINCRBY', Q.meta, 'n', #jobs) - #jobs
local written = false

for index, job in ipairs(jobs) do
  local stored = redis.call('HGET', Q.jobs, job.id)
  if stored then
    reply[#reply + 1] = 0
    reply[#reply + 1] = job.id
    reply[#reply + 1] = stored
    reply[#reply + 1] = redis.call('HGET', Q.data, job.id)
  else
    reply[#reply + 1] = 1
    reply[#reply + 1] = job.id
    reply[#reply + 1] = insert_job(Q, job, order + index, now)
    reply[#reply + 1] = job.data
    written = true
  end
end
if written then
  wake(Q)
end
return reply
