--[[
  remove: delete a job that is not active, with its data, logs and tags.

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

    ARGV[1]  id  the job

  Output:
    1 removed, 0 no such job, -1 the job is active (nothing removed).

  Events: removed, at the server's TIME.

  Flows: a parent's child records go with it; a child not finished tells its parent it
  was removed (see `_flows.lua`).
]]
--- @include "_lib"
--- @include "_events"
--- @include "_flows"

local Q = {jobs = KEYS[1], data = KEYS[2], waiting = KEYS[3], delayed = KEYS[4],
  completed = KEYS[5], failed = KEYS[6], ['waiting-children'] = KEYS[7], tags = KEYS[8],
  logs = KEYS[9], gwaiting = KEYS[10], groups = KEYS[11], meta = KEYS[12],
  events = KEYS[13], deps = KEYS[14]}

local rec = load_job(Q, ARGV[1])
if not rec then
  return 0
end
if rec.state == 'active' then
  return -1
end
final_event(recorder(Q, nil), 'removed', ARGV[1])
delete_job(Q, ARGV[1], rec)
return 1
