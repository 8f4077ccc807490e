--[[
  add: write a batch of new jobs, unless the caller's settings are stale. An id still
  stored returns that job unchanged; then a job's dedupe rule may return the job last
  added with its key instead (updated, with `replace`): see `_dedupe.lua`.

  Input:
    KEYS[1]   meta      queue flags and counters (hash)
    KEYS[2]   jobs      job id -> record (hash)
    KEYS[3]   data      job id -> data JSON (hash)
    KEYS[4]   waiting   (sorted set)
    KEYS[5]   active    (sorted set; read to restart positions)
    KEYS[6]   delayed   (sorted set)
    KEYS[7]   tags      "<tag>\0<id>" at score 0 (sorted set)
    KEYS[8]   marker    wakes idle workers (sorted set)
    KEYS[9]   gwaiting  waiting jobs by group, in claim order (sorted set)
    KEYS[10]  groups    groups with waiting jobs, in turn order (sorted set)
    KEYS[11]  dedupe    dedupe key -> JSON {id, exp} (hash)
    KEYS[12]  events    the event stream (see `_events.lua`)

    ARGV[1]  config_version  the settings version the caller validated against
    ARGV[2]  now_ms          epoch ms, or "" for the server's TIME
    ARGV[3]  jobs            JSON array of {id, name, data, options, priority, lifo, delay,
                             run_at, tags, group, keep: {cc, ca, fc, fa},
                             dedupe: {key, ttl, replace}}

  Output:
    {summary, created, id, x, y, ...}: summary is JSON {now, stale}; then per job in input
    order either 1 (written), its id, its state and its run_at (or nil: the caller knows
    the rest of a new job, and sending its record back would cost more than writing it),
    or 0 (an id still stored, or a dedupe survivor), that job's id, record and data.
    Stale settings: {summary} alone, nothing written.

  Wakes: the marker, when a job was written.

  Events: see `_dedupe.lua`.
]]
--- @include "_lib"
--- @include "_events"
--- @include "_dedupe"

local Q = {meta = KEYS[1], jobs = KEYS[2], data = KEYS[3], waiting = KEYS[4],
  active = KEYS[5], delayed = KEYS[6], tags = KEYS[7], marker = KEYS[8], gwaiting = KEYS[9],
  groups = KEYS[10], dedupe = KEYS[11], events = KEYS[12]}

local now = resolve_now(ARGV[2])
local version = tonumber(redis.call('HGET', Q.meta, 'config_version')) or 0
if version ~= tonumber(ARGV[1]) then
  return {cjson.encode({now = now, stale = true})}
end

local jobs = cjson.decode(ARGV[3])
local reply = {cjson.encode({now = now})}
local order = redis.call('HINCRBY', Q.meta, 'n', #jobs) - #jobs
local written = false
local E = recorder(Q, now)

for index, job in ipairs(jobs) do
  local created, id, raw, data, wrote = add_job(Q, job, order + index, now, E)
  reply[#reply + 1] = created
  reply[#reply + 1] = id
  if created == 1 then
    local run_at = due_at(job, now)
    reply[#reply + 1] = (run_at and run_at > now) and 'delayed' or 'waiting'
    reply[#reply + 1] = run_at or false
  else
    reply[#reply + 1] = raw
    reply[#reply + 1] = data
  end
  written = written or wrote
end
if written then
  wake(Q)
end
return reply
