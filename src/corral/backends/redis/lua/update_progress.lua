--[[
  update_progress: store a job's progress.

  Input:
    KEYS[1]  jobs    job id -> record (hash)
    KEYS[2]  meta    queue settings (hash; read for the event level)
    KEYS[3]  events  the event stream (see `_events.lua`)

    ARGV[1]  id        the job
    ARGV[2]  progress  JSON text

  Output:
    1 stored, 0 the job is gone.

  Events: progress {progress}, at the server's TIME.
]]
--- @include "_lib"
--- @include "_events"

local Q = {jobs = KEYS[1], meta = KEYS[2], events = KEYS[3]}

local rec = load_job(Q, ARGV[1])
if not rec then
  return 0
end
rec.progress = ARGV[2]
save_job(Q, ARGV[1], rec)
local E = recorder(Q, nil)
if E.on then
  final_event(E, 'progress', ARGV[1], embed('progress', ARGV[2]))
end
return 1
