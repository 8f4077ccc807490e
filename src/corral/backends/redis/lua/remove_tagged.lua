--[[
  remove_tagged: delete the waiting and delayed jobs carrying a tag.

  Input:
    KEYS[1]   jobs      job id -> record (hash)
    KEYS[2]   data      (hash)
    KEYS[3]   waiting   (sorted set)
    KEYS[4]   delayed   (sorted set)
    KEYS[5]   tags      "<tag>\0<id>" at score 0 (sorted set)
    KEYS[6]   logs      (hash)
    KEYS[7]   gwaiting  waiting jobs by group, in claim order (sorted set)
    KEYS[8]   groups    groups with waiting jobs, in turn order (sorted set)
    KEYS[9]   meta      queue settings (hash; read for the event level)
    KEYS[10]  events    the event stream (see `_events.lua`)
    KEYS[11]  deps      a parent's child records (hash)

    ARGV[1]  tag  the tag

  Output:
    The number of jobs removed.

  Events: removed per job, at the server's TIME.

  Flows: as remove.lua. The jobs removed are those waiting or delayed before any of them
  went (a parent they release stays).
]]
--- @include "_lib"
--- @include "_events"
--- @include "_flows"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  tags = KEYS[5], logs = KEYS[6], gwaiting = KEYS[7], groups = KEYS[8], meta = KEYS[9],
  events = KEYS[10], deps = KEYS[11]}

local prefix = ARGV[1] .. '\0'
-- Tags and ids are UTF-8, which never holds the byte 0xFF: it bounds the prefix.
local members = redis.call('ZRANGEBYLEX', Q.tags, '[' .. prefix, '(' .. prefix .. '\255')
local removed, records = {}, {}
for _, member in ipairs(members) do
  local id = string.sub(member, #prefix + 1)
  local rec = load_job(Q, id)
  if rec and (rec.state == 'waiting' or rec.state == 'delayed') then
    removed[#removed + 1] = id
    records[#records + 1] = rec
  end
end
job_events(recorder(Q, nil), 'removed', removed)
for i, id in ipairs(removed) do
  delete_job(Q, id, records[i])
end
return #removed
