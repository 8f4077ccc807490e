--[[
  drain: delete every waiting job, and every delayed one when asked.

  Input:
    KEYS[1]   jobs      job id -> record (hash)
    KEYS[2]   data      (hash)
    KEYS[3]   waiting   (sorted set)
    KEYS[4]   delayed   (sorted set)
    KEYS[5]   tags      (sorted set)
    KEYS[6]   logs      (hash)
    KEYS[7]   gwaiting  waiting jobs by group, in claim order (sorted set)
    KEYS[8]   groups    groups with waiting jobs, in turn order (sorted set)
    KEYS[9]   meta      queue settings (hash; read for the event level)
    KEYS[10]  events    the event stream (see `_events.lua`)
    KEYS[11]  deps      a parent's child records (hash)

    ARGV[1]  delayed  "1" to delete delayed jobs too

  Output:
    The number of jobs removed.

  Events: removed per job (of many, the newest 10,000: the cap), at the server's TIME.

  Flows: as remove.lua. The jobs removed are those waiting (or delayed) before any of them
  went (a parent they release stays).
]]
--- @include "_lib"
--- @include "_events"
--- @include "_flows"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  tags = KEYS[5], logs = KEYS[6], gwaiting = KEYS[7], groups = KEYS[8], meta = KEYS[9],
  events = KEYS[10], deps = KEYS[11]}

local states = {'waiting'}
if ARGV[1] == '1' then
  states[2] = 'delayed'
end
local E = recorder(Q, nil)
local removed, found = 0, {}
for i, state in ipairs(states) do
  found[i] = redis.call('ZRANGE', Q[state], 0, -1)
end
for i, state in ipairs(states) do
  local ids = found[i]
  job_events(E, 'removed', ids)
  delete_many(Q, state, ids, true)
  removed = removed + #ids
end
return removed
