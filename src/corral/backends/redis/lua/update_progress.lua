--[[
  update_progress: store a job's progress.

  Input:
    KEYS[1]  jobs  job id -> record (hash)

    ARGV[1]  id        the job
    ARGV[2]  progress  JSON text

  Output:
    1 stored, 0 the job is gone.
]]
--- @include "_lib"

local Q = {jobs = KEYS[1]}

local rec = load_job(Q, ARGV[1])
if not rec then
  return 0
end
rec.progress = ARGV[2]
save_job(Q, ARGV[1], rec)
return 1
